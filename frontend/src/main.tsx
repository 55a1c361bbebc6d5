import { render } from "preact";
import { App } from "./app";
import { initAuth } from "./auth";
import { loadConfig } from "./config";
import "./styles.css";

const root = document.getElementById("app")!;

loadConfig()
  .then((config) => {
    initAuth(config);
    root.textContent = ""; // the "Loading Runtune…" placeholder of index.html
    render(<App profile={config.profile} />, root);
  })
  .catch((error: Error) => {
    root.innerHTML = "";
    const message = document.createElement("p");
    message.className = "error-box";
    message.textContent = `Runtune cannot start: ${error.message}`;
    root.append(message);
  });
