// Where a run trains (runtune/compute.py): Cloud Run's one GPU, or a Vertex AI machine of one to eight
// GPUs, and the offers an estimate prices it on, in plain words.
import type { Estimate, GpuList, Offer } from "./api";
import { formatDuration } from "./ui";

export type ComputeChoice = "auto" | "cloud_run" | "vertex";

export const BACKEND_NAMES: Record<Offer["backend"], string> = { cloud_run: "Cloud Run", vertex: "Vertex AI" };

export const SPOT_WORDS =
  "Spot capacity costs a fraction of the on-demand price, but Google may take the machine back at any time; the run then restarts and resumes from its newest checkpoint.";

/** Where a planned run trains, from its estimate (or a job's `estimate` summary with its GPU label):
 * "Vertex AI: 8 x NVIDIA H200 (141 GB), a3-ultragpu-8g, on Spot capacity", "Cloud Run: NVIDIA L4 (24 GB)",
 * "this machine's CPU (the local platform)". */
export function placeWords(place: { compute?: string; machine?: string | null; spot?: boolean; gpuLabel?: string | null; machineLabel?: string | null }, where?: GpuList["where"]): string {
  if (place.compute === "vertex") return `Vertex AI: ${place.gpuLabel ?? place.machine}${place.spot ? ", on Spot capacity" : ", on demand"}`;
  if (place.machine === "cpu") return `${place.machineLabel ?? "this machine's CPU"} (the local platform)`;
  if (where && where !== "cloud") return `this machine's ${place.gpuLabel ?? "GPU"} (the local platform)`;
  return `Cloud Run: ${place.gpuLabel ?? "one GPU"}`;
}

const dollars = (usd: number | null | undefined) => (usd === null || usd === undefined ? "—" : `$${usd.toFixed(2)}`);

/** Whether `offer` is the shape the estimate took. */
export function isChosen(offer: Offer, estimate: Estimate): boolean {
  if (!estimate.gpu || offer.backend !== estimate.compute) return false;
  return offer.backend === "vertex" ? offer.shape === estimate.machine : offer.shape === estimate.gpu;
}

/** Why the chosen shape was taken, in the words of the choice the form made. */
function whyWords(choice: ComputeChoice, spot: boolean, maxHours: number | null): string {
  const prices = spot ? "at Spot prices where Vertex AI offers them" : "at on-demand prices";
  if (choice !== "auto") return `the cheapest shape on ${BACKEND_NAMES[choice]}, as you asked (${prices})`;
  if (maxHours) return `the cheapest shape that fits and finishes within ${maxHours} h (${prices})`;
  return `the cheapest shape that fits (${prices})`;
}

/** The shapes the run was priced on, the chosen one marked, and why it was chosen. */
export function Offers({ estimate, choice, spot, maxHours }: { estimate: Estimate; choice: ComputeChoice; spot: boolean; maxHours: number | null }) {
  const offers = estimate.offers;
  if (!offers.length) return null;
  const chosen = offers.find((offer) => isChosen(offer, estimate));
  return (
    <div class="offers" data-testid="offers">
      <h4>Where it could train</h4>
      <div class="table-scroll">
        <table class="list">
          <thead>
            <tr>
              <th>Where</th>
              <th>Machine and GPUs</th>
              <th>Time</th>
              <th>On demand</th>
              <th>Spot</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {offers.map((offer) => (
              <tr key={offer.backend + offer.shape} data-testid="offer" class={isChosen(offer, estimate) ? "chosen" : offer.fits ? "" : "muted"}>
                <td>{BACKEND_NAMES[offer.backend]}</td>
                <td>{offer.label}</td>
                {offer.fits || offer.seconds !== null ? (
                  <>
                    <td>{formatDuration(offer.seconds)}</td>
                    <td>{dollars(offer.usd)}</td>
                    <td>{offer.backend === "vertex" ? dollars(offer.spot_usd) : "no Spot"}</td>
                  </>
                ) : (
                  <td colSpan={3} />
                )}
                <td>{isChosen(offer, estimate) ? <strong>chosen</strong> : offer.fits ? "" : `does not fit: ${offer.reason ?? ""}`}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <p data-testid="offer-chosen">
        {chosen
          ? `It trains on ${BACKEND_NAMES[chosen.backend]}, ${chosen.label}: ${whyWords(choice, spot, maxHours)}.`
          : "None of these shapes holds the run."}
      </p>
    </div>
  );
}
