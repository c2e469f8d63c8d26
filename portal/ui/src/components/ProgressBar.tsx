import { useQuery } from "@tanstack/react-query";

import { getProgressOptions } from "../client/@tanstack/react-query.gen";

export function ProgressBar() {
  const progress = useQuery(getProgressOptions());
  const value = progress.data?.value;
  const stale = progress.data?.stale && progress.data.error !== "not fetched yet";
  const phase = progress.data?.phase;
  const text =
    value == null ? (progress.isError ? "unavailable" : "waiting") : `${Math.round(value)}%`;
  return (
    <div className={stale ? "progress stale" : "progress"} title={stale ? "Last known value: the progress feed is not answering" : "Platform rollout progress"}>
      <span className="progress-label">
        {phase ? <span className="phase">{phase}</span> : "progress"} <span data-testid="progress-value">{text}</span>
      </span>
      <div
        className="progress-track"
        role="progressbar"
        aria-label="Platform progress"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={value ?? undefined}
        data-testid="progress"
      >
        <div className="progress-fill" style={{ width: `${value ?? 0}%` }} />
      </div>
    </div>
  );
}
