import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";

import { meQuery, rememberCsrfToken } from "../api";
import { loginMutation } from "../client/@tanstack/react-query.gen";
import { InlineError } from "../components/States";

const DEMO_USERS = [
  { email: "alice@acme.test", name: "Alice", tenant: "Acme Corp", role: "admin" },
  { email: "bob@acme.test", name: "Bob", tenant: "Acme Corp", role: "member" },
  { email: "carol@globex.test", name: "Carol", tenant: "Globex Inc", role: "admin" },
];

export function LoginPage() {
  const queryClient = useQueryClient();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const login = useMutation({
    ...loginMutation(),
    onSuccess: (data) => {
      rememberCsrfToken(data.csrf_token);
      queryClient.setQueryData(meQuery.queryKey, data.user);
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    login.mutate({ body: { email, password } });
  };
  const demo = (address: string) => login.mutate({ body: { email: address, password: "demo" } });

  return (
    <div className="login-page">
      <div className="login-card card">
        <div className="login-brand">
          <span className="brand-mark" aria-hidden>
            ⟳
          </span>
          <h1>refetch portal</h1>
          <p className="muted">A cloud console that stays live over one update stream.</p>
        </div>
        <section aria-labelledby="demo-title">
          <h2 id="demo-title" className="section-title">
            Sign in as a demo user
          </h2>
          <ul className="demo-users">
            {DEMO_USERS.map((user) => (
              <li key={user.email}>
                <button type="button" className="demo-user" onClick={() => demo(user.email)} disabled={login.isPending}>
                  <span className="avatar" aria-hidden>
                    {user.name[0]}
                  </span>
                  <span className="demo-user-text">
                    <strong>{user.name}</strong>
                    <span className="muted small">{user.email}</span>
                  </span>
                  <span className={`role role-${user.role}`}>
                    {user.role} · {user.tenant}
                  </span>
                </button>
              </li>
            ))}
          </ul>
          <p className="muted small">Password for all of them: demo</p>
        </section>
        <div className="divider">
          <span>or with your email</span>
        </div>
        <form onSubmit={submit} className="form">
          <label>
            Email
            <input type="email" autoComplete="username" value={email} onChange={(e) => setEmail(e.target.value)} required />
          </label>
          <label>
            Password
            <input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
          </label>
          <InlineError error={login.error} />
          <button type="submit" className="btn primary" disabled={login.isPending}>
            {login.isPending ? "Signing in…" : "Sign in"}
          </button>
        </form>
      </div>
    </div>
  );
}
