import { useUpdateLog } from "refetch-sse/react";
import type { FrameLogEntry } from "refetch-sse";
import { useEffect, useRef, useState } from "react";

/** The notifications this browser received: the note's "centralized logging", seen from the client. */
export function UpdatesPanel({ onClose }: { onClose: () => void }) {
  const log = useUpdateLog();
  const [showPings, setShowPings] = useState(false);
  const ref = useRef<HTMLElement>(null);
  const frames = log.filter((f) => showPings || f.event !== "ping").slice().reverse();

  useEffect(() => {
    ref.current?.focus();
    const onKey = (event: KeyboardEvent) => {
      if (event.key === "Escape") onClose();
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [onClose]);

  return (
    <aside id="updates-panel" className="panel" aria-label="Received updates" ref={ref} tabIndex={-1}>
      <div className="panel-head">
        <h2>Updates</h2>
        <button type="button" className="btn ghost small" onClick={onClose} aria-label="Close the updates panel">
          ✕
        </button>
      </div>
      <p className="muted small">
        What the server told this browser changed. Each notice names a type (and keys); the page refetches what it
        shows of it.
      </p>
      <label className="check small">
        <input type="checkbox" checked={showPings} onChange={(e) => setShowPings(e.target.checked)} /> show heartbeats
      </label>
      {frames.length === 0 ? (
        <p className="empty small">Nothing received yet.</p>
      ) : (
        <ol className="update-list" data-testid="update-list">
          {frames.map((frame, i) => (
            <li key={`${frame.at}-${frame.id ?? i}-${i}`} className={`update update-${frame.event}`} data-testid="update-entry" data-event={frame.event}>
              <time dateTime={new Date(frame.at).toISOString()}>{clock(frame.at)}</time>
              <span className={`tag tag-${frame.event}`}>{frame.event}</span>
              <span className="update-body">{summarize(frame)}</span>
            </li>
          ))}
        </ol>
      )}
    </aside>
  );
}

function clock(at: number): string {
  const d = new Date(at);
  return d.toLocaleTimeString(undefined, { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function summarize(frame: FrameLogEntry): string {
  try {
    const data = JSON.parse(frame.data) as Record<string, unknown>;
    if (frame.event === "invalidate" && Array.isArray(data.updates)) {
      return (data.updates as { type: string; keys?: string[] }[])
        .map((u) => (u.keys?.length ? `${u.type} ${u.keys.map((k) => `#${k}`).join(" ")}` : `${u.type} (all)`))
        .join(", ");
    }
    if (frame.event === "resync") return `refetch everything: ${String(data.reason ?? "")}`;
    if (frame.event === "hello") return `connected at cursor ${String(data.cursor ?? "")}`;
    if (frame.event === "ping") return "heartbeat";
  } catch {
    // a frame that is not JSON is shown as it came
  }
  return frame.data;
}
