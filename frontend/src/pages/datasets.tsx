import { type Dataset, type Page, get } from "../api";
import { Link } from "../router";
import { Empty, ErrorBox, LinkCell, Loading, ProgressBar, StatusCell, Table, formatBytes, formatDate, useResource } from "../ui";

export function datasetProgress(dataset: Dataset): number | null {
  const progress = dataset.progress;
  if (dataset.status !== "processing" || !progress?.total) return null;
  return progress.done / progress.total;
}

export function Datasets() {
  const list = useResource(() => get<Page<Dataset>>("/v1/datasets?limit=100"), [], {
    every: 2000,
    poll: (page) => page.data.some((d) => d.status === "processing" || d.status === "uploading"),
  });
  return (
    <section>
      <div class="page-head">
        <h1>Datasets</h1>
        <Link class="button primary" href="/datasets/new">
          New dataset
        </Link>
      </div>
      {list.loading && !list.data && <Loading />}
      <ErrorBox error={list.error} />
      {list.data && list.data.data.length === 0 && (
        <Empty title="No datasets yet">
          <p>Upload an image-folder archive, a chat JSONL or a table, or import a set from the Hugging Face Hub.</p>
          <Link class="button primary" href="/datasets/new">
            Add your first dataset
          </Link>
        </Empty>
      )}
      {list.data && list.data.data.length > 0 && (
        <Table class="list" scroll columns={["Name", "Status", "Kind", "Rows", { label: "Size", class: "hide-phone" }, { label: "Created", class: "hide-phone" }]}>
          {list.data.data.map((dataset) => {
            const fraction = datasetProgress(dataset);
            return (
              <tr key={dataset.id}>
                <LinkCell href={`/datasets/${dataset.id}`}>{dataset.name}</LinkCell>
                <StatusCell value={dataset.status}>{fraction !== null && <ProgressBar value={fraction} />}</StatusCell>
                <td>{dataset.task_kind ?? "—"}</td>
                <td>{Object.values(dataset.splits).reduce((a, b) => a + b, 0) || "—"}</td>
                <td class="hide-phone">{dataset.bytes ? formatBytes(dataset.bytes) : "—"}</td>
                <td class="hide-phone">{formatDate(dataset.created_at)}</td>
              </tr>
            );
          })}
        </Table>
      )}
    </section>
  );
}
