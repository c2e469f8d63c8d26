import { useUpdateStatus } from "refetch-sse/react";
import type { StreamStatus } from "refetch-sse";

import { isLeader, useStream } from "../stream";

const LABELS: Record<StreamStatus, { text: string; hint: string }> = {
  open: { text: "Live", hint: "Connected: changes appear as they happen." },
  connecting: { text: "Connecting", hint: "Opening the update stream…" },
  reconnecting: { text: "Reconnecting", hint: "The update stream dropped; retrying. Data may lag until it is back." },
  closed: { text: "Offline", hint: "No update stream." },
  unauthorized: { text: "Signed out", hint: "The session ended; sign in again." },
  error: { text: "Not live", hint: "The server refused the update stream; retrying slowly. Reload to be sure." },
};

export function ConnectionIndicator() {
  const status = useUpdateStatus();
  const leader = isLeader(useStream());
  const label = LABELS[status];
  const shared = leader === null ? "" : leader ? " This tab holds the connection." : " Shared from another tab.";
  return (
    <span
      className={`conn conn-${status}`}
      role="status"
      title={label.hint + shared}
      data-testid="connection"
      data-status={status}
      data-leader={leader === null ? undefined : String(leader)}
    >
      <span className="dot" aria-hidden />
      {label.text}
    </span>
  );
}
