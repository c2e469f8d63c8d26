import { useQueryClient } from "@tanstack/react-query";
import { useUpdateLog } from "refetch-sse/react";
import { useEffect, useRef, useState } from "react";

import { meQuery, rememberCsrfToken } from "../api";
import { logout } from "../client/sdk.gen";
import type { Me } from "../client/types.gen";
import { href, type Route } from "../router";
import { ConnectionIndicator } from "./ConnectionIndicator";
import { ProgressBar } from "./ProgressBar";

const NAV: { route: Route; label: string; active: Route["page"][] }[] = [
  { route: { page: "projects" }, label: "Projects", active: ["projects", "project"] },
  { route: { page: "images" }, label: "Images", active: ["images"] },
  { route: { page: "clusters" }, label: "Clusters", active: ["clusters"] },
  { route: { page: "team" }, label: "Team", active: ["team"] },
];

interface HeaderProps {
  me: Me;
  route: Route;
  panelOpen: boolean;
  onTogglePanel: () => void;
}

export function Header({ me, route, panelOpen, onTogglePanel }: HeaderProps) {
  const received = useUpdateLog().filter((f) => f.event === "invalidate" || f.event === "resync").length;
  return (
    <header className="header">
      <div className="header-row">
        <a className="brand" href={href({ page: "projects" })}>
          <span className="brand-mark" aria-hidden>
            ⟳
          </span>
          refetch <span className="brand-sub">portal</span>
        </a>
        <nav className="nav" aria-label="Main">
          {NAV.map((item) => (
            <a
              key={item.label}
              href={href(item.route)}
              className={item.active.includes(route.page) ? "nav-link active" : "nav-link"}
              aria-current={item.active.includes(route.page) ? "page" : undefined}
            >
              {item.label}
            </a>
          ))}
        </nav>
        <div className="header-tools">
          <ProgressBar />
          <ConnectionIndicator />
          <button
            type="button"
            className={panelOpen ? "btn ghost icon-btn pressed" : "btn ghost icon-btn"}
            aria-pressed={panelOpen}
            aria-controls="updates-panel"
            onClick={onTogglePanel}
            data-testid="updates-toggle"
          >
            Updates
            {received > 0 && (
              <span className="count" aria-label={`${received} received`}>
                {received > 99 ? "99+" : received}
              </span>
            )}
          </button>
          <UserMenu me={me} />
        </div>
      </div>
    </header>
  );
}

function UserMenu({ me }: { me: Me }) {
  const [open, setOpen] = useState(false);
  const [signingOut, setSigningOut] = useState(false);
  const ref = useRef<HTMLDivElement>(null);
  const queryClient = useQueryClient();

  useEffect(() => {
    if (!open) return undefined;
    const onKey = (event: KeyboardEvent) => {
      if (event.key === "Escape") {
        setOpen(false);
        ref.current?.querySelector<HTMLButtonElement>("button")?.focus();
      }
    };
    const onClick = (event: MouseEvent) => {
      if (!ref.current?.contains(event.target as Node)) setOpen(false);
    };
    document.addEventListener("keydown", onKey);
    document.addEventListener("mousedown", onClick);
    return () => {
      document.removeEventListener("keydown", onKey);
      document.removeEventListener("mousedown", onClick);
    };
  }, [open]);

  const signOut = async () => {
    setSigningOut(true);
    try {
      await logout();
    } finally {
      rememberCsrfToken(null);
      queryClient.clear();
      queryClient.setQueryData(meQuery.queryKey, null);
      setSigningOut(false);
    }
  };

  const initials = me.name
    .split(/\s+/)
    .map((w) => w[0])
    .join("")
    .slice(0, 2)
    .toUpperCase();

  return (
    <div className="user-menu" ref={ref}>
      <button
        type="button"
        className="avatar-btn"
        aria-haspopup="true"
        aria-expanded={open}
        onClick={() => setOpen((o) => !o)}
        data-testid="user-menu"
      >
        <span className="avatar" aria-hidden>
          {initials}
        </span>
        <span className="sr-only">Account of {me.name}</span>
      </button>
      {open && (
        <div className="menu" role="menu" aria-label="Account">
          <div className="menu-head">
            <strong>{me.name}</strong>
            <span className="muted">{me.email}</span>
          </div>
          <div className="menu-section">
            <div className="menu-label">Tenants</div>
            {me.tenants.length === 0 && <div className="muted small">No tenant</div>}
            <ul className="tenant-list">
              {me.tenants.map((t) => (
                <li key={t.slug}>
                  <span>{t.name}</span>
                  <span className={`role role-${t.role}`}>{t.role}</span>
                </li>
              ))}
            </ul>
          </div>
          <button type="button" role="menuitem" className="menu-item" onClick={() => void signOut()} disabled={signingOut}>
            {signingOut ? "Signing out…" : "Sign out"}
          </button>
        </div>
      )}
    </div>
  );
}
