import { useQuery } from "@tanstack/react-query";

import { listClustersOptions } from "../client/@tanstack/react-query.gen";
import type { Me } from "../client/types.gen";
import { Ago, Empty, ErrorState, Loading, StatusBadge } from "../components/States";

export function ClustersPage({ me }: { me: Me }) {
  const clusters = useQuery(listClustersOptions());
  const tenantName = (slug: string) => me.tenants.find((t) => t.slug === slug)?.name ?? slug;
  return (
    <section aria-labelledby="clusters-title">
      <div className="page-head">
        <div>
          <h1 id="clusters-title">Clusters</h1>
          <p className="muted">
            Kubernetes clusters (Gardener shoots) of your tenants
            {clusters.data && (
              <>
                {" · "}confirmed <Ago at={clusters.data.fetched_at} />
              </>
            )}
          </p>
        </div>
      </div>
      {clusters.isPending ? (
        <Loading label="Loading clusters" />
      ) : clusters.isError ? (
        <ErrorState error={clusters.error} onRetry={() => void clusters.refetch()} />
      ) : clusters.data.clusters.length === 0 ? (
        <Empty title={clusters.data.stale ? "The cluster service has not answered yet" : "No clusters"}>
          {clusters.data.stale ? clusters.data.error : "Your tenants have no clusters."}
        </Empty>
      ) : (
        <ul className="cards" aria-label="Clusters">
          {clusters.data.clusters.map((cluster) => (
            <li key={`${cluster.tenant}/${cluster.name}`} className="card cluster" data-testid="cluster-card">
              <div className="cluster-head">
                <strong className="mono">{cluster.name}</strong>
                <StatusBadge status={cluster.status} />
              </div>
              <dl className="facts">
                <dt>Tenant</dt>
                <dd>{tenantName(cluster.tenant)}</dd>
                <dt>Region</dt>
                <dd>{cluster.region}</dd>
                <dt>Kubernetes</dt>
                <dd className="mono">{cluster.kubernetes_version}</dd>
                <dt>Nodes</dt>
                <dd>{cluster.nodes}</dd>
              </dl>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
