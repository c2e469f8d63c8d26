import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";

import { isNotFound } from "../api";
import {
  createInstanceMutation,
  deleteInstanceMutation,
  getProjectByIdOptions,
  listFlavorsOptions,
  listImagesOptions,
  listProjectInstancesOptions,
  listProjectInstancesQueryKey,
  startInstanceMutation,
  stopInstanceMutation,
} from "../client/@tanstack/react-query.gen";
import type { FlavorName, Instance, Me } from "../client/types.gen";
import { Ago, Empty, ErrorState, InlineError, Loading, StatusBadge } from "../components/States";
import { href } from "../router";

export function ProjectPage({ me, id }: { me: Me; id: number }) {
  const path = { path: { project_id: id } };
  // Tagged from the schema: reads("projects", key="project_id"), so a rename of another
  // project does not refetch this page.
  const project = useQuery(getProjectByIdOptions(path));
  const instances = useQuery(listProjectInstancesOptions(path));
  const canWrite = !!project.data && me.tenants.some((t) => t.slug === project.data.tenant && t.role !== "viewer");

  if (project.isError) {
    return (
      <section>
        <Breadcrumb name="Not found" />
        {isNotFound(project.error) ? (
          <Empty title="This project does not exist (any more)">
            It may have been deleted by someone in your team. <a href={href({ page: "projects" })}>Back to projects</a>
          </Empty>
        ) : (
          <ErrorState error={project.error} onRetry={() => void project.refetch()} />
        )}
      </section>
    );
  }

  const counts = new Map<string, number>();
  for (const instance of instances.data ?? []) counts.set(instance.status, (counts.get(instance.status) ?? 0) + 1);

  return (
    <section aria-labelledby="project-title">
      <Breadcrumb name={project.data?.name ?? "…"} />
      <div className="page-head">
        <div>
          <h1 id="project-title">{project.data?.name ?? <span className="skeleton-text" />}</h1>
          <p className="muted" data-testid="instance-summary">
            Compute instances
            {instances.data && instances.data.length > 0 && (
              <>
                {" · "}
                {[...counts].map(([status, n]) => `${n} ${status}`).join(" · ")}
              </>
            )}
          </p>
        </div>
      </div>
      {canWrite && <CreateInstance projectId={id} />}
      {instances.isPending ? (
        <Loading label="Loading instances" />
      ) : instances.isError ? (
        isNotFound(instances.error) ? null : <ErrorState error={instances.error} onRetry={() => void instances.refetch()} />
      ) : instances.data.length === 0 ? (
        <Empty title="No instances in this project">{canWrite ? "Create one above; its status updates live." : null}</Empty>
      ) : (
        <div className="table-wrap card">
          <table className="table" data-testid="instance-table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Flavor</th>
                <th scope="col">Image</th>
                <th scope="col">Status</th>
                <th scope="col">Changed</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {instances.data.map((instance) => (
                <InstanceRow key={instance.id} instance={instance} projectId={id} canWrite={canWrite} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Breadcrumb({ name }: { name: string }) {
  return (
    <nav className="breadcrumb" aria-label="Breadcrumb">
      <a href={href({ page: "projects" })}>Projects</a>
      <span aria-hidden> / </span>
      <span aria-current="page">{name}</span>
    </nav>
  );
}

function useReplaceInstance(projectId: number) {
  const queryClient = useQueryClient();
  return (instance: Instance) =>
    queryClient.setQueryData(
      listProjectInstancesQueryKey({ path: { project_id: projectId } }),
      (old: Instance[] | undefined) =>
        old && (old.some((i) => i.id === instance.id) ? old.map((i) => (i.id === instance.id ? instance : i)) : [...old, instance]),
    );
}

function CreateInstance({ projectId }: { projectId: number }) {
  const flavors = useQuery(listFlavorsOptions());
  const images = useQuery(listImagesOptions());
  const [name, setName] = useState("");
  const [flavor, setFlavor] = useState<FlavorName | "">("");
  const [image, setImage] = useState("");
  const replace = useReplaceInstance(projectId);
  const create = useMutation({
    ...createInstanceMutation(),
    onSuccess: (instance) => {
      setName("");
      replace(instance);
    },
  });
  const chosenFlavor = flavor || flavors.data?.[0]?.name;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (!chosenFlavor) return; // the flavors are still loading
    create.mutate({ path: { project_id: projectId }, body: { name, flavor: chosenFlavor, image: image || null } });
  };
  return (
    <form className="toolbar card" onSubmit={submit} aria-label="New instance">
      <label className="grow">
        <span className="sr-only">Instance name</span>
        <input
          placeholder="new-instance-name"
          value={name}
          onChange={(e) => setName(e.target.value.toLowerCase())}
          pattern="[a-z0-9]([a-z0-9\-]*[a-z0-9])?"
          title="Lower-case letters, digits and dashes"
          maxLength={63}
          required
          data-testid="new-instance-name"
        />
      </label>
      <label>
        <span className="sr-only">Flavor</span>
        <select
          value={chosenFlavor ?? ""}
          // the options are the server's own flavor names
          onChange={(e) => setFlavor(e.target.value as FlavorName)}
          disabled={!flavors.data}
        >
          {(flavors.data ?? []).map((f) => (
            <option key={f.name} value={f.name}>
              {f.name} · {f.vcpus} vCPU · {f.memory_gb} GB
            </option>
          ))}
        </select>
      </label>
      <label>
        <span className="sr-only">Image</span>
        <select value={image} onChange={(e) => setImage(e.target.value)}>
          <option value="">No image</option>
          {(images.data?.images ?? [])
            .filter((i) => i.status === "available")
            .map((i) => (
              <option key={i.id} value={i.id}>
                {i.name}
              </option>
            ))}
        </select>
      </label>
      <button type="submit" className="btn primary" disabled={create.isPending || !name || !chosenFlavor}>
        {create.isPending ? "Creating…" : "Create instance"}
      </button>
      <InlineError error={create.error} />
    </form>
  );
}

function InstanceRow({ instance, projectId, canWrite }: { instance: Instance; projectId: number; canWrite: boolean }) {
  const replace = useReplaceInstance(projectId);
  const options = { onSuccess: replace };
  const start = useMutation({ ...startInstanceMutation(), ...options });
  const stop = useMutation({ ...stopInstanceMutation(), ...options });
  const remove = useMutation({ ...deleteInstanceMutation(), ...options });
  const busy = start.isPending || stop.isPending || remove.isPending;
  const path = { path: { instance_id: instance.id } };
  const error = start.error ?? stop.error ?? remove.error;
  return (
    <tr data-testid="instance-row" data-instance-id={instance.id} data-status={instance.status}>
      <th scope="row" className="mono">
        {instance.name}
      </th>
      <td>{instance.flavor}</td>
      <td>{instance.image ?? <span className="muted">—</span>}</td>
      <td>
        <StatusBadge status={instance.status} />
      </td>
      <td className="muted small">
        <Ago at={instance.updated_at} />
      </td>
      <td className="actions">
        {canWrite && (
          <>
            {instance.status === "stopped" && (
              <button type="button" className="btn small" disabled={busy} onClick={() => start.mutate(path)}>
                Start<span className="sr-only"> {instance.name}</span>
              </button>
            )}
            {instance.status === "running" && (
              <button type="button" className="btn small" disabled={busy} onClick={() => stop.mutate(path)}>
                Stop<span className="sr-only"> {instance.name}</span>
              </button>
            )}
            {instance.status !== "deleting" && (
              <button type="button" className="btn ghost small danger-text" disabled={busy} onClick={() => remove.mutate(path)}>
                Delete<span className="sr-only"> {instance.name}</span>
              </button>
            )}
          </>
        )}
        <InlineError error={error} />
      </td>
    </tr>
  );
}
