// Reading the first rows of a table in the browser, for the column mapping's live preview. The server
// re-reads the whole file; this only has to agree on the first rows.

export type Row = Record<string, unknown>;

export const TABLE_SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".parquet"];
export const ARCHIVE_SUFFIXES = [".zip", ".tar", ".tar.gz", ".tgz"];

export function kindOf(filename: string): "table" | "archive" | "other" {
  const name = filename.toLowerCase();
  if (ARCHIVE_SUFFIXES.some((s) => name.endsWith(s))) return "archive";
  if (TABLE_SUFFIXES.some((s) => name.endsWith(s))) return "table";
  return "other";
}

function parseDelimited(text: string, delimiter: string, limit: number): Row[] {
  const rows: string[][] = [];
  let field = "";
  let row: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length && rows.length <= limit; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === delimiter) {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field || row.length) rows.push([...row, field]);
  const [header, ...body] = rows;
  if (!header) return [];
  return body.slice(0, limit).map((cells) => Object.fromEntries(header.map((name, i) => [name, cells[i] ?? ""])));
}

/** A line of a JSONL file that is not a JSON object: the preview shows it, marked, where it is. */
export interface BadLine {
  line: number;
  text: string;
  problem: string;
}

export interface Preview {
  columns: string[];
  rows: Row[];
  bad: BadLine[];
}

const SLICE = 1024 * 1024;

function jsonlRows(text: string, complete: boolean, limit: number): { rows: Row[]; bad: BadLine[] } {
  const lines = text.split("\n");
  // The last line may be cut at the slice boundary: only a file read whole ends where it ends.
  if (!complete) lines.pop();
  const rows: Row[] = [];
  const bad: BadLine[] = [];
  for (let i = 0; i < lines.length && rows.length + bad.length < limit; i++) {
    const line = lines[i].replace(/\r$/, "");
    if (!line.trim()) continue;
    try {
      const value = JSON.parse(line) as unknown;
      if (value && typeof value === "object" && !Array.isArray(value)) rows.push(value as Row);
      else bad.push({ line: i + 1, text: line, problem: "not a JSON object" });
    } catch (caught) {
      bad.push({ line: i + 1, text: line, problem: `not valid JSON (${(caught as Error).message})` });
    }
  }
  return { rows, bad };
}

/** Up to `limit` rows (and the bad lines among them) and the column names; null when the preview
 * cannot be read in the browser. */
export async function previewRows(file: File, limit = 20): Promise<Preview | null> {
  const name = file.name.toLowerCase();
  if (name.endsWith(".parquet")) return null;
  const text = await file.slice(0, SLICE).text();
  let rows: Row[];
  let bad: BadLine[] = [];
  if (name.endsWith(".csv")) rows = parseDelimited(text, ",", limit);
  else if (name.endsWith(".tsv")) rows = parseDelimited(text, "\t", limit);
  else if (name.endsWith(".jsonl")) ({ rows, bad } = jsonlRows(text, file.size <= SLICE, limit));
  else {
    try {
      const parsed = JSON.parse(text);
      rows = Array.isArray(parsed) ? parsed.slice(0, limit) : [];
    } catch {
      return null; // larger than the slice: the server will read it
    }
  }
  const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))];
  return { columns, rows, bad };
}

export interface Mapping {
  system: string;
  user: string;
  image: string;
  answer: string;
  label: string;
  /** A preference set's preferred and non-preferred answer columns (a `dpo` run's data). */
  chosen: string;
  rejected: string;
  split: string;
}

const IMAGE = ["image", "img", "image_path", "image_file", "file_name", "filename", "path", "picture", "photo"];
const LABEL = ["label", "labels", "class", "category", "fine_label", "breed"];
const ANSWER = ["answer", "caption", "text", "output", "response", "completion", "target"];
const QUESTION = ["question", "prompt", "query", "instruction", "input"];
const CHOSEN = ["chosen", "preferred", "preferred_output"];
const REJECTED = ["rejected", "non_preferred", "non_preferred_output"];

/** The same guess the server makes (runtune/datasets/detect.py) when no mapping is given. */
export function guessMapping(columns: string[]): Mapping {
  const lowered = new Map(columns.map((c) => [c.toLowerCase(), c]));
  const pick = (names: string[]) => names.map((n) => lowered.get(n)).find(Boolean) ?? "";
  const [chosen, rejected] = [pick(CHOSEN), pick(REJECTED)];
  if (chosen && rejected) {
    const question = pick(QUESTION);
    return { system: "", user: question ? `{${question}}` : "", image: pick(IMAGE), answer: "", label: "", chosen, rejected, split: lowered.get("split") ?? "" };
  }
  const label = pick(LABEL);
  const answer = label ? "" : pick(ANSWER);
  const question = pick(QUESTION) || (label ? pick(["text", "sentence", "content"]) : "");
  return { system: "", user: question ? `{${question}}` : "", image: pick(IMAGE), answer, label, chosen: "", rejected: "", split: lowered.get("split") ?? "" };
}

export function render(template: string, row: Row, labels: string[]): { text: string; missing: string[] } {
  const missing: string[] = [];
  const text = template.replace(/\{([A-Za-z0-9_.-]+)\}/g, (_, name: string) => {
    if (name === "labels") return labels.join(", ");
    if (!(name in row)) {
      missing.push(name);
      return `{${name}}`;
    }
    return String(row[name] ?? "");
  });
  return { text: text.trim(), missing };
}
