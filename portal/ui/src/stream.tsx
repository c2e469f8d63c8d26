import { useSSEUpdates } from "refetch-sse/react";
import type { UpdateSource } from "refetch-sse";
import { createContext, useContext, type ReactNode } from "react";

import { cursors, schemaTags } from "./api";

const StreamContext = createContext<UpdateSource | null>(null);

/** Opens the one update stream of the app and lets the indicator see it. */
export function LiveUpdates({ children }: { children: ReactNode }) {
  const source = useSSEUpdates({ url: "/api/updates", cursors, tags: schemaTags });
  return <StreamContext.Provider value={source}>{children}</StreamContext.Provider>;
}

export function useStream(): UpdateSource | null {
  return useContext(StreamContext);
}

/** Whether this tab holds the browser's one connection (the others get its events relayed). */
export function isLeader(source: UpdateSource | null): boolean | null {
  if (!source || !("isLeader" in source)) return null;
  return Boolean((source as { isLeader: boolean }).isLeader);
}
