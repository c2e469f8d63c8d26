import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  resolve: {
    // `refetch` is linked from ../../js, which has its own copies for its tests: one React and
    // one TanStack Query in the bundle, or the hooks would not see this app's QueryClient.
    dedupe: ["react", "react-dom", "@tanstack/react-query"],
  },
  server: {
    // `npm run dev` next to `python -m portal`: the API and the update stream stay same-origin.
    proxy: { "/api": { target: process.env.PORTAL_URL ?? "http://127.0.0.1:8000" } },
  },
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true },
});
