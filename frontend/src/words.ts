// The API's validation wording in plain words. The API keeps pydantic's phrasing ("Input should be
// less than or equal to 256") and names the field by its JSON path (`error.problems[].param`); a form
// shows each problem next to its field, where the label already says which field it is, so only the
// rule is left to say.

const FIELD_WORDS: Record<string, string> = {
  training_file: "Dataset",
  validation_file: "Validation dataset",
  model: "Model",
  n_epochs: "Epochs",
  batch_size: "Batch size",
  learning_rate_multiplier: "Learning-rate multiplier",
  method: "Method",
  rank: "LoRA rank",
  alpha: "LoRA alpha",
  dropout: "LoRA dropout",
  max_length: "Max length",
  lr_scheduler: "Schedule",
  warmup_ratio: "Warm-up ratio",
  checkpoint_every_steps: "Checkpoint every",
  gpu: "GPU",
  suffix: "Run name",
  metadata: "Metadata",
  name: "Name",
  file: "File",
  filename: "File name",
  bytes: "File size",
  task_kind: "Task",
  system: "System prompt",
  user: "User turn",
  image: "Image column",
  label: "Label column",
  answer: "Answer column",
  split: "Split",
  max_samples: "Max samples",
  max_tokens: "Max tokens",
  temperature: "Temperature",
  top_p: "Top-p",
  prompt: "Prompt",
};

/** "method.supervised.runtune.lora.rank" -> "LoRA rank" (the last part the form knows). */
export function fieldWords(param: string | null): string {
  if (!param) return "";
  const parts = param.split(".").filter((p) => !/^\d+$/.test(p));
  for (let i = parts.length - 1; i >= 0; i--) if (FIELD_WORDS[parts[i]]) return FIELD_WORDS[parts[i]];
  return parts[parts.length - 1] ?? param;
}

const RULES: [RegExp, (m: RegExpMatchArray) => string][] = [
  [/^Input should be greater than or equal to (\S+)$/, (m) => `Must be at least ${m[1]}`],
  [/^Input should be greater than (\S+)$/, (m) => `Must be more than ${m[1]}`],
  [/^Input should be less than or equal to (\S+)$/, (m) => `Must be at most ${m[1]}`],
  [/^Input should be less than (\S+)$/, (m) => `Must be less than ${m[1]}`],
  [/^Input should be a valid integer.*$/, () => "Must be a whole number (or auto, where offered)"],
  [/^Input should be a valid number.*$/, () => "Must be a number"],
  [/^Input should be a valid boolean.*$/, () => "Must be yes or no"],
  [/^Input should be a valid string.*$/, () => "Must be text"],
  [/^Field required$/, () => "Required"],
  [/^Extra inputs are not permitted$/, () => "Not a setting this form knows"],
  [/^String should have at most (\d+) characters?$/, (m) => `At most ${m[1]} characters`],
  [/^String should have at least (\d+) characters?$/, (m) => `At least ${m[1]} characters`],
  [/^String should match pattern '\^\[A-Za-z0-9_-\]\*\$'$/, () => "Only letters, digits, - and _"],
  [/^String should match pattern .*$/, () => "Not in the expected format"],
  [/^Dictionary should have at most (\d+) items.*$/, (m) => `At most ${m[1]} entries`],
  [/^Input should be (('[^']*'(, | or )?)+)$/, (m) => `Must be one of: ${m[1].replace(/'/g, "").replace(/ or /g, ", ")}`],
  [/^Value error, (.*)$/, (m) => m[1].charAt(0).toUpperCase() + m[1].slice(1)],
];

/** A rule in plain words; a message the API wrote for people already (a RuntuneError) is kept. */
export function plainWords(message: string): string {
  const text = message
    .trim()
    .replace(/^Invalid value for '[^']*': /, "")
    .replace(/ \(and \d+ more problems?\)$/, "");
  for (const [pattern, say] of RULES) {
    const hit = text.match(pattern);
    if (hit) return say(hit);
  }
  return text;
}

// The API's names in the estimate's sentences (its reason and warnings), as the form labels them.
const TERMS: [RegExp, string][] = [
  [/set export\.merged=false/g, "turn off the merged export"],
  [/export\.merged/g, "merged export"],
  [/use gpu '([^']+)'/g, "pick the GPU $1"],
  [/use method '(\w+)'/g, "use the $1 method"],
  [/\bbatch_size\b/g, "the batch size"],
  [/\bmax_length\b/g, "the max length"],
  [/ \(the 'hf_token' secret\)/g, ""],
  [/with the gcp profile on a Cloud Run GPU/g, "on a cloud deployment's GPU"],
  [/stage the base model's weights in the data bucket under models\/ \(read through the mount, not downloaded into memory\)/g, "ask your administrator to stage the model's weights in the data bucket"],
  [/\btiny-\* models\b/g, "tiny models"],
];

/** An estimate's sentence with the API's field names and settings in the form's words. */
export function estimateWords(text: string): string {
  let said = text;
  for (const [pattern, words] of TERMS) said = said.replace(pattern, words);
  return said.charAt(0).toUpperCase() + said.slice(1);
}

/** What an estimate is based on ("calibrated from N finished runs" / "from published throughput"). */
export function basisWords(calibratedRuns: number | undefined): string {
  return calibratedRuns
    ? `${calibratedRuns} finished run${calibratedRuns === 1 ? "" : "s"} of this model on this platform`
    : "published GPU figures (no finished runs of this model here yet)";
}
