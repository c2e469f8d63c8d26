import { useEffect, useState, type ReactNode } from "react";

import { errorMessage } from "../api";

export function Loading({ rows = 3, label = "Loading" }: { rows?: number; label?: string }) {
  return (
    <div className="skeleton-list" role="status" aria-label={label}>
      {Array.from({ length: rows }, (_, i) => (
        <div key={i} className="skeleton-row" />
      ))}
    </div>
  );
}

export function ErrorState({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  return (
    <div className="state error-state" role="alert">
      <strong>Could not load this.</strong> <span>{errorMessage(error)}</span>
      {onRetry && (
        <button type="button" className="btn small" onClick={onRetry}>
          Retry
        </button>
      )}
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="state empty-state" data-testid="empty">
      <strong>{title}</strong>
      {children && <div className="muted">{children}</div>}
    </div>
  );
}

export function InlineError({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p className="inline-error" role="alert">
      {errorMessage(error)}
    </p>
  );
}

const TRANSITIONAL = new Set(["provisioning", "starting", "stopping", "deleting", "creating", "reconciling"]);

export function StatusBadge({ status }: { status: string }) {
  const busy = TRANSITIONAL.has(status);
  return (
    <span className={`badge badge-${status}`} data-testid="status">
      {busy && <span className="spinner tiny" aria-hidden />}
      {status}
    </span>
  );
}

/** "12 s ago", kept current. */
export function Ago({ at }: { at: string | null | undefined }) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 5000);
    return () => clearInterval(timer);
  }, []);
  if (!at) return <span className="muted">never</span>;
  const seconds = Math.max(0, Math.round((now - new Date(at).getTime()) / 1000));
  const text =
    seconds < 5 ? "just now" : seconds < 60 ? `${seconds} s ago` : seconds < 3600 ? `${Math.floor(seconds / 60)} min ago` : new Date(at).toLocaleString();
  return <time dateTime={at} title={new Date(at).toLocaleString()}>{text}</time>;
}
