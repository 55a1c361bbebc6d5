// Server-Sent Events over fetch: EventSource cannot send the Authorization header. Reconnects with
// Last-Event-ID after a dropped connection, and stops at the server's `done` event.
import { authHeaders, toApiError } from "./api";

export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

export function followEvents(
  path: string,
  onMessage: (message: SseMessage) => void,
  onError: (error: Error) => void,
): () => void {
  const controller = new AbortController();
  let lastId: string | null = null;
  let finished = false;

  const run = async () => {
    let failures = 0;
    while (!finished && !controller.signal.aborted) {
      try {
        const headers = await authHeaders({ Accept: "text/event-stream", ...(lastId ? { "Last-Event-ID": lastId } : {}) });
        const response = await fetch(path, { headers, signal: controller.signal });
        if (!response.ok) throw await toApiError(response);
        failures = 0;
        const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n/g, "\n");
          let cut: number;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const message = parse(block);
            if (!message) continue;
            if (message.id) lastId = message.id;
            if (message.event === "done") finished = true;
            onMessage(message);
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
        if ((error as { status?: number }).status && (error as { status: number }).status < 500) {
          onError(error as Error);
          return;
        }
        failures++;
        if (failures > 8) {
          onError(error as Error);
          return;
        }
      }
      if (!finished) await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, 500 * 2 ** failures)));
    }
  };
  void run();
  return () => controller.abort();
}

function parse(block: string): SseMessage | null {
  let id: string | null = null;
  let event = "message";
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") id = value;
    else if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0 && event === "message") return null;
  return { id, event, data: data.join("\n") };
}
