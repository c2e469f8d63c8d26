import { useMutation, useQuery } from "@tanstack/react-query";

import {
  changeMemberRoleMutation,
  listMembersOptions,
  removeMemberMutation,
} from "../client/@tanstack/react-query.gen";
import type { Me, Member, Role, TenantRole } from "../client/types.gen";
import { Empty, ErrorState, InlineError, Loading } from "../components/States";

const ROLES: Role[] = ["admin", "member", "viewer"];

export function TeamPage({ me }: { me: Me }) {
  return (
    <section aria-labelledby="team-title">
      <div className="page-head">
        <div>
          <h1 id="team-title">Team</h1>
          <p className="muted">Who belongs to your tenants. Admins change roles and remove members; it takes effect at once.</p>
        </div>
      </div>
      {me.tenants.length === 0 ? (
        <Empty title="You are not a member of any tenant" />
      ) : (
        me.tenants.map((tenant) => <TenantMembers key={tenant.slug} tenant={tenant} me={me} />)
      )}
    </section>
  );
}

function TenantMembers({ tenant, me }: { tenant: TenantRole; me: Me }) {
  const members = useQuery(listMembersOptions({ path: { tenant: tenant.slug } }));
  const isAdmin = tenant.role === "admin";
  return (
    <div className="card tenant-block">
      <h2 className="section-title">
        {tenant.name} <span className={`role role-${tenant.role}`}>you: {tenant.role}</span>
      </h2>
      {members.isPending ? (
        <Loading rows={2} label={`Loading members of ${tenant.name}`} />
      ) : members.isError ? (
        <ErrorState error={members.error} onRetry={() => void members.refetch()} />
      ) : (
        <ul className="list flat" aria-label={`Members of ${tenant.name}`}>
          {members.data.map((member) => (
            <MemberRow key={member.user_id} member={member} tenant={tenant.slug} isAdmin={isAdmin} isMe={member.user_id === me.id} />
          ))}
        </ul>
      )}
    </div>
  );
}

function MemberRow({ member, tenant, isAdmin, isMe }: { member: Member; tenant: string; isAdmin: boolean; isMe: boolean }) {
  const change = useMutation(changeMemberRoleMutation());
  const remove = useMutation(removeMemberMutation());
  const path = { path: { tenant, user_id: member.user_id } };
  return (
    <li className="row" data-testid="member-row" data-email={member.email}>
      <div className="row-main">
        <strong>
          {member.name}
          {isMe && <span className="muted"> (you)</span>}
        </strong>
        <span className="muted small">{member.email}</span>
      </div>
      <div className="row-actions">
        {isAdmin && !isMe ? (
          <>
            <label>
              <span className="sr-only">Role of {member.name}</span>
              <select
                value={member.role}
                disabled={change.isPending}
                onChange={(e) => change.mutate({ ...path, body: { role: e.target.value as Role } })}
              >
                {ROLES.map((role) => (
                  <option key={role} value={role}>
                    {role}
                  </option>
                ))}
              </select>
            </label>
            <button type="button" className="btn ghost small danger-text" disabled={remove.isPending} onClick={() => remove.mutate(path)}>
              Remove<span className="sr-only"> {member.name}</span>
            </button>
          </>
        ) : (
          <span className={`role role-${member.role}`}>{member.role}</span>
        )}
        <InlineError error={change.error ?? remove.error} />
      </div>
    </li>
  );
}
