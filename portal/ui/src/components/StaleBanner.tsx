import { useQuery } from "@tanstack/react-query";

import { getProgressOptions, listClustersOptions, listImagesOptions } from "../client/@tanstack/react-query.gen";
type Polled = { stale: boolean; error?: string | null };

/** "Data may be outdated" while any polled source (progress, images, clusters) is failing. */
export function StaleBanner() {
  const sources: [string, Polled | undefined][] = [
    ["the progress feed", useQuery(getProgressOptions()).data],
    ["the image registry", useQuery(listImagesOptions()).data],
    ["the cluster service", useQuery(listClustersOptions()).data],
  ];
  const down = sources.filter(([, data]) => data?.stale && data.error !== "not fetched yet");
  if (down.length === 0) return null;
  const names = down.map(([name]) => name);
  const joined = names.length === 1 ? names[0] : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
  const list = joined.charAt(0).toUpperCase() + joined.slice(1);
  return (
    <div className="banner warning" role="alert" data-testid="stale-banner">
      <strong>Data may be outdated.</strong> {list} {names.length === 1 ? "is" : "are"} not answering;
      you see the last known values. This clears by itself when {names.length === 1 ? "it answers" : "they answer"} again.
    </div>
  );
}
