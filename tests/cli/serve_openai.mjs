// serve_openai.mjs — the client side of test_serve.sh: the official `openai` npm SDK (installed by
// scripts/install-deps.sh into third_party/npm) against a running `lmkit serve`.
//
//   node serve_openai.mjs BASE_URL API_KEY
// Prints one "ok   ..." or "FAIL ..." line per check; exits 1 if any failed.
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.LMKIT_SRC || path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const sdk = path.join(root, "third_party/npm/node_modules/openai/index.mjs");
const { default: OpenAI } = await import(pathToFileURL(sdk).href);

const [base, key] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base + "/v1", apiKey: key, maxRetries: 0, timeout: 60000 });
let failed = 0;
const check = (name, cond, detail = "") => {
  console.log((cond ? "ok   " : "FAIL ") + name + (detail ? " (" + detail + ")" : ""));
  if (!cond) failed++;
};
const msgs = [{ role: "system", content: "You are terse." }, { role: "user", content: "hello, how are you?" }];

// models
const models = await client.models.list();
check("models.list names the served model", models.data.length === 1 && models.data[0].object === "model", models.data[0]?.id);
const model = models.data[0].id;

// chat, greedy
const chat = await client.chat.completions.create({ model, messages: msgs, max_tokens: 12, temperature: 0 });
const c0 = chat.choices[0];
check("chat: OpenAI's shape (id, object, created, model, choices, usage)",
  chat.id.startsWith("chatcmpl-") && chat.object === "chat.completion" && Number.isInteger(chat.created) &&
  chat.model === model && c0.index === 0 && c0.message.role === "assistant" && typeof c0.message.content === "string" &&
  ["stop", "length"].includes(c0.finish_reason), JSON.stringify(c0.message.content));
check("chat: usage counts", chat.usage.prompt_tokens > 0 && chat.usage.completion_tokens > 0 &&
  chat.usage.completion_tokens <= 12 && chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens,
  JSON.stringify(chat.usage));

// streaming chat: the same greedy answer, in chunks, with the usage chunk at the end
const stream = await client.chat.completions.create({ model, messages: msgs, max_tokens: 12, temperature: 0, stream: true,
  stream_options: { include_usage: true } });
let text = "", role = null, finish = null, usage = null, chunks = 0;
for await (const ch of stream) {
  chunks++;
  if (ch.object !== "chat.completion.chunk") throw new Error("chunk object " + ch.object);
  if (ch.usage) usage = ch.usage;
  for (const c of ch.choices) {
    if (c.delta.role) role = c.delta.role;
    if (c.delta.content) text += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
}
check("streaming chat: the deltas add up to the non-streamed greedy answer", text === c0.message.content && role === "assistant",
  `${chunks} chunks, ${JSON.stringify(text)}`);
check("streaming chat: finish_reason and include_usage", finish === c0.finish_reason && usage &&
  usage.completion_tokens === chat.usage.completion_tokens, JSON.stringify(usage));

// seeded sampling is reproducible; logprobs in OpenAI's shape
const s1 = await client.chat.completions.create({ model, messages: msgs, max_tokens: 10, temperature: 1.0, seed: 7,
  logprobs: true, top_logprobs: 3 });
const s2 = await client.chat.completions.create({ model, messages: msgs, max_tokens: 10, temperature: 1.0, seed: 7 });
check("seeded sampling gives the same answer twice", s1.choices[0].message.content === s2.choices[0].message.content,
  JSON.stringify(s1.choices[0].message.content));
const lp = s1.choices[0].logprobs?.content ?? [];
check("logprobs: one entry per token, top_logprobs sorted, chosen <= 0",
  lp.length === s1.usage.completion_tokens - (s1.choices[0].finish_reason === "stop" ? 1 : 0) &&
  lp.every(e => e.logprob <= 0 && e.top_logprobs.length === 3 && e.top_logprobs[0].logprob >= e.top_logprobs[2].logprob &&
    Array.isArray(e.bytes)) &&
  /* the tokens' bytes spell the answer (when it is valid UTF-8: a lone byte reads as U+FFFD) */
  (s1.choices[0].message.content.includes("\ufffd") ||
   Buffer.from(lp.flatMap(e => e.bytes)).toString() === s1.choices[0].message.content), `${lp.length} entries`);

// stop strings end the answer before them
const free = await client.completions.create({ model, prompt: "the quick", max_tokens: 16, temperature: 0 });
const full = free.choices[0].text;
const cut = full.indexOf(" ", 2) > 0 ? full.slice(full.indexOf(" ", 2), full.indexOf(" ", 2) + 2) : null;
check("completions: OpenAI's shape", free.object === "text_completion" && free.id.startsWith("cmpl-") &&
  typeof full === "string" && free.usage.completion_tokens === 16 && free.choices[0].finish_reason === "length", JSON.stringify(full));
if (cut) {
  const st = await client.completions.create({ model, prompt: "the quick", max_tokens: 16, temperature: 0, stop: [cut] });
  check("completions: a stop string ends the text before it", st.choices[0].text === full.slice(0, full.indexOf(cut)) &&
    st.choices[0].finish_reason === "stop", `stop ${JSON.stringify(cut)} -> ${JSON.stringify(st.choices[0].text)}`);
}
// streamed completion
const cs = await client.completions.create({ model, prompt: "the quick", max_tokens: 16, temperature: 0, stream: true });
let ctext = "";
for await (const ch of cs) ctext += ch.choices[0]?.text ?? "";
check("streaming completions add up to the non-streamed text", ctext === full, JSON.stringify(ctext));

// embeddings: the SDK asks for base64 by default and decodes it; float on request
const e1 = await client.embeddings.create({ model, input: ["hello world", "the quick brown fox"] });
const e2 = await client.embeddings.create({ model, input: "hello world", encoding_format: "float" });
const dim = e2.data[0].embedding.length;
const close = e1.data[0].embedding.every((x, i) => Math.abs(x - e2.data[0].embedding[i]) <= 1e-5 * (1 + Math.abs(x)));
check("embeddings: shape, base64 == float, one vector per input", e1.object === "list" && e1.data.length === 2 &&
  e1.data[1].index === 1 && e1.data[0].object === "embedding" && dim > 0 && e1.data[0].embedding.length === dim && close &&
  e1.usage.prompt_tokens > 0, `dim ${dim}`);

// errors come back as the SDK's typed errors, naming the field
try {
  await client.chat.completions.create({ model, messages: msgs, temperature: 5 });
  check("a bad field is a 400", false);
} catch (e) {
  check("a bad field is a 400 naming it", e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "temperature" &&
    /temperature/.test(e.message), e.message);
}
try {
  await new OpenAI({ baseURL: base + "/v1", apiKey: "wrong", maxRetries: 0 }).models.list();
  check("a wrong API key is a 401", false);
} catch (e) {
  check("a wrong API key is a 401", e instanceof OpenAI.AuthenticationError && e.status === 401, e.message);
}
process.exit(failed ? 1 : 0);
