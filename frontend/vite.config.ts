import { defineConfig } from "vite";

// The gateway serves the build at `/`; in `npm run dev` Vite proxies the API and the runtime config to it.
const gateway = process.env.RUNTUNE_GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: { target: "es2022", sourcemap: false, chunkSizeWarningLimit: 600 },
  server: { port: 5173, proxy: { "/v1": gateway, "/config.json": gateway } },
});
