import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";

import {
  createProjectMutation,
  deleteProjectMutation,
  listProjectsOptions,
  listProjectsQueryKey,
  renameProjectMutation,
} from "../client/@tanstack/react-query.gen";
import type { Me, Project } from "../client/types.gen";
import { Ago, Empty, ErrorState, InlineError, Loading } from "../components/States";
import { href } from "../router";

export function writableTenants(me: Me) {
  return me.tenants.filter((t) => t.role !== "viewer");
}

export function ProjectsPage({ me }: { me: Me }) {
  const projects = useQuery(listProjectsOptions());
  const tenantName = (slug: string) => me.tenants.find((t) => t.slug === slug)?.name ?? slug;

  return (
    <section aria-labelledby="projects-title">
      <div className="page-head">
        <div>
          <h1 id="projects-title">Projects</h1>
          <p className="muted">
            {me.tenants.length === 0
              ? "You are not a member of any tenant."
              : `Across ${me.tenants.map((t) => t.name).join(" and ")}. Changes by your team appear here as they happen.`}
          </p>
        </div>
      </div>
      {me.tenants.length === 0 ? (
        <Empty title="No tenant, no projects">
          You are not (or no longer) a member of any tenant. Ask an admin to add you.
        </Empty>
      ) : (
        <>
          <CreateProject me={me} />
          {projects.isPending ? (
            <Loading label="Loading projects" />
          ) : projects.isError ? (
            <ErrorState error={projects.error} onRetry={() => void projects.refetch()} />
          ) : projects.data.length === 0 ? (
            <Empty title="No projects yet">Create the first one above; your team sees it at once.</Empty>
          ) : (
            <ul className="list" aria-label="Projects" data-testid="project-list">
              {projects.data.map((project) => (
                <ProjectRow key={project.id} project={project} tenant={tenantName(project.tenant)} me={me} />
              ))}
            </ul>
          )}
        </>
      )}
    </section>
  );
}

function CreateProject({ me }: { me: Me }) {
  const queryClient = useQueryClient();
  const tenants = writableTenants(me);
  const [name, setName] = useState("");
  const [tenant, setTenant] = useState(tenants[0]?.slug ?? "");
  const create = useMutation({
    ...createProjectMutation(),
    onSuccess: (project) => {
      setName("");
      // Show it now; the server's `projects` update refetches the list once to confirm.
      queryClient.setQueryData(listProjectsQueryKey(), (old: Project[] | undefined) =>
        old && !old.some((p) => p.id === project.id) ? [...old, project] : old,
      );
    },
  });
  if (tenants.length === 0) {
    return <p className="muted">You can read projects but not create them (viewer role).</p>;
  }
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({ body: { name, tenant: tenant || null } });
  };
  return (
    <form className="toolbar card" onSubmit={submit} aria-label="New project">
      <label className="grow">
        <span className="sr-only">Project name</span>
        <input
          placeholder="New project name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          maxLength={100}
          required
          data-testid="new-project-name"
        />
      </label>
      {tenants.length > 1 && (
        <label>
          <span className="sr-only">Tenant</span>
          <select value={tenant} onChange={(e) => setTenant(e.target.value)}>
            {tenants.map((t) => (
              <option key={t.slug} value={t.slug}>
                {t.name}
              </option>
            ))}
          </select>
        </label>
      )}
      <button type="submit" className="btn primary" disabled={create.isPending || !name.trim()}>
        {create.isPending ? "Creating…" : "Create project"}
      </button>
      <InlineError error={create.error} />
    </form>
  );
}

function ProjectRow({ project, tenant, me }: { project: Project; tenant: string; me: Me }) {
  const queryClient = useQueryClient();
  const canWrite = me.tenants.some((t) => t.slug === project.tenant && t.role !== "viewer");
  const [editing, setEditing] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [name, setName] = useState(project.name);
  const setList = (update: (old: Project[]) => Project[]) =>
    queryClient.setQueryData(listProjectsQueryKey(), (old: Project[] | undefined) => (old ? update(old) : old));
  const rename = useMutation({
    ...renameProjectMutation(),
    onSuccess: (renamed) => {
      setEditing(false);
      setList((old) => old.map((p) => (p.id === renamed.id ? renamed : p)));
    },
  });
  const remove = useMutation({
    ...deleteProjectMutation(),
    onSuccess: () => setList((old) => old.filter((p) => p.id !== project.id)),
  });

  if (editing) {
    return (
      <li className="row">
        <form
          className="row-form"
          onSubmit={(e) => {
            e.preventDefault();
            rename.mutate({ path: { project_id: project.id }, body: { name } });
          }}
        >
          <label className="grow">
            <span className="sr-only">New name for {project.name}</span>
            <input value={name} onChange={(e) => setName(e.target.value)} autoFocus maxLength={100} required
              onKeyDown={(e) => e.key === "Escape" && setEditing(false)} />
          </label>
          <button type="submit" className="btn primary small" disabled={rename.isPending}>
            Save
          </button>
          <button type="button" className="btn ghost small" onClick={() => setEditing(false)}>
            Cancel
          </button>
          <InlineError error={rename.error} />
        </form>
      </li>
    );
  }
  return (
    <li className="row" data-testid="project-row" data-project-id={project.id}>
      <div className="row-main">
        <a className="row-title" href={href({ page: "project", id: project.id })}>
          {project.name}
        </a>
        <span className="muted small">
          {tenant} · updated <Ago at={project.updated_at} />
        </span>
      </div>
      {canWrite && (
        <div className="row-actions">
          {confirming ? (
            <>
              <span className="small">Delete {project.name} and its instances?</span>
              <button type="button" className="btn danger small" onClick={() => remove.mutate({ path: { project_id: project.id } })} disabled={remove.isPending}>
                Delete
              </button>
              <button type="button" className="btn ghost small" onClick={() => setConfirming(false)} autoFocus>
                Keep
              </button>
            </>
          ) : (
            <>
              <button type="button" className="btn ghost small" onClick={() => { setName(project.name); setEditing(true); }}>
                Rename<span className="sr-only"> {project.name}</span>
              </button>
              <button type="button" className="btn ghost small danger-text" onClick={() => setConfirming(true)}>
                Delete<span className="sr-only"> {project.name}</span>
              </button>
            </>
          )}
          <InlineError error={remove.error} />
        </div>
      )}
    </li>
  );
}
