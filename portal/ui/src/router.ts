// Hash routes: the portal serves one index.html, and every page has a link that survives reloads.
import { useSyncExternalStore } from "react";

export type Route =
  | { page: "projects" }
  | { page: "project"; id: number }
  | { page: "images" }
  | { page: "clusters" }
  | { page: "team" };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  if (parts[0] === "projects" && parts[1] && /^\d+$/.test(parts[1])) {
    return { page: "project", id: Number(parts[1]) };
  }
  if (parts[0] === "images" || parts[0] === "clusters" || parts[0] === "team") {
    return { page: parts[0] };
  }
  return { page: "projects" };
}

export function href(route: Route): string {
  return route.page === "project" ? `#/projects/${route.id}` : `#/${route.page}`;
}

export function navigate(route: Route): void {
  window.location.hash = href(route);
}

function subscribe(listener: () => void): () => void {
  window.addEventListener("hashchange", listener);
  return () => window.removeEventListener("hashchange", listener);
}

export function useRoute(): Route {
  const hash = useSyncExternalStore(subscribe, () => window.location.hash, () => "");
  return parseRoute(hash);
}
