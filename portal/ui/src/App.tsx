import { useQuery } from "@tanstack/react-query";
import { useState } from "react";

import { errorMessage, meQuery } from "./api";
import type { Me } from "./client/types.gen";
import { Header } from "./components/Header";
import { StaleBanner } from "./components/StaleBanner";
import { UpdatesPanel } from "./components/UpdatesPanel";
import { ClustersPage } from "./pages/ClustersPage";
import { ImagesPage } from "./pages/ImagesPage";
import { LoginPage } from "./pages/LoginPage";
import { ProjectPage } from "./pages/ProjectPage";
import { ProjectsPage } from "./pages/ProjectsPage";
import { TeamPage } from "./pages/TeamPage";
import { useRoute } from "./router";
import { LiveUpdates } from "./stream";

export function App() {
  const me = useQuery(meQuery);
  if (me.isPending) {
    return (
      <div className="splash" role="status">
        <span className="spinner" aria-hidden /> Loading the portal…
      </div>
    );
  }
  if (me.isError) {
    return (
      <div className="splash">
        <div className="card error-card" role="alert">
          <h1>The portal is not answering</h1>
          <p>{errorMessage(me.error)}</p>
          <button className="btn primary" onClick={() => void me.refetch()}>
            Try again
          </button>
        </div>
      </div>
    );
  }
  if (!me.data) return <LoginPage />;
  return (
    // One stream for the whole app (and, through a Web Lock, for every tab of this browser).
    <LiveUpdates>
      <Shell me={me.data} />
    </LiveUpdates>
  );
}

function Shell({ me }: { me: Me }) {
  const route = useRoute();
  const [panelOpen, setPanelOpen] = useState(false);
  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <Header me={me} route={route} panelOpen={panelOpen} onTogglePanel={() => setPanelOpen((o) => !o)} />
      <StaleBanner />
      <div className="body">
        <main id="main" className="main" tabIndex={-1}>
          {route.page === "projects" && <ProjectsPage me={me} />}
          {route.page === "project" && <ProjectPage me={me} id={route.id} />}
          {route.page === "images" && <ImagesPage />}
          {route.page === "clusters" && <ClustersPage me={me} />}
          {route.page === "team" && <TeamPage me={me} />}
        </main>
        {panelOpen && <UpdatesPanel onClose={() => setPanelOpen(false)} />}
      </div>
    </div>
  );
}
