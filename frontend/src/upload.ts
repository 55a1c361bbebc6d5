// A resumable upload straight to the bucket (the session URL from `POST /v1/uploads`), following Cloud
// Storage's protocol: 8 MiB chunks with Content-Range, 308 = "send the rest", a status query after a
// network failure resumes where the server stopped. Progress counts bytes the server has acknowledged
// plus the bytes of the chunk in flight.

const CHUNK = 8 * 1024 * 1024; // a multiple of 256 KiB, as the protocol requires
const MAX_RETRIES = 6;

interface ChunkAnswer {
  status: number;
  range: string | null;
  body: string;
}

function send(url: string, body: Blob | null, contentRange: string, onSent: (bytes: number) => void): Promise<ChunkAnswer> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.setRequestHeader("Content-Range", contentRange);
    xhr.upload.onprogress = (event) => onSent(event.loaded);
    xhr.onload = () => resolve({ status: xhr.status, range: xhr.getResponseHeader("Range"), body: xhr.responseText });
    xhr.onerror = () => reject(new Error("network error"));
    xhr.ontimeout = () => reject(new Error("timeout"));
    xhr.send(body);
  });
}

/** The first byte the server has not got, from a 308's `Range: bytes=0-N` (none: nothing yet). */
function nextOffset(range: string | null): number {
  const match = range?.match(/bytes=0-(\d+)/);
  return match ? Number(match[1]) + 1 : 0;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class UploadFailed extends Error {}

export async function resumableUpload(url: string, file: Blob, onProgress: (fraction: number) => void): Promise<void> {
  const total = file.size;
  let offset = 0;
  let retries = 0;
  onProgress(0);
  while (offset < total) {
    const end = Math.min(offset + CHUNK, total);
    const start = offset;
    let answer: ChunkAnswer;
    try {
      answer = await send(url, file.slice(start, end), `bytes ${start}-${end - 1}/${total}`, (sent) =>
        onProgress(Math.min(start + sent, total - 1) / total),
      );
    } catch {
      if (++retries > MAX_RETRIES) throw new UploadFailed("The upload keeps failing: check your connection and try again");
      await sleep(500 * 2 ** retries);
      const status = await send(url, null, `bytes */${total}`, () => undefined).catch(() => null);
      if (status && (status.status === 200 || status.status === 201)) break;
      if (status?.status === 308) offset = nextOffset(status.range);
      continue;
    }
    if (answer.status === 200 || answer.status === 201) {
      offset = total;
    } else if (answer.status === 308) {
      // A 308 without a readable Range (not exposed by CORS) means the chunk arrived whole.
      offset = answer.range ? nextOffset(answer.range) : end;
      retries = 0;
    } else {
      throw new UploadFailed(`The storage server refused the upload (${answer.status}): ${answer.body.slice(0, 200)}`);
    }
    onProgress(offset / total);
  }
  onProgress(1);
}
