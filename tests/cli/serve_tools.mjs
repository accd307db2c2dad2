// serve_tools.mjs — the client side of test_serve_tools.sh: tool calls through the official
// `openai` npm SDK (third_party/npm) against a running `lmkit serve --calc` whose model the test
// tuned to call get_weather for "What is the weather in Paris?", to answer the tool's result,
// to greet "Hello" without a call, and to call the calculator for "go".
//
//   node serve_tools.mjs BASE_URL CASE.json      (CASE.json: {"tool", "system"})
// Prints one "ok   ..." or "FAIL ..." line per check; exits 1 if any failed.
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.LMKIT_SRC || path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const { default: OpenAI } = await import(pathToFileURL(path.join(root, "third_party/npm/node_modules/openai/index.mjs")).href);

const [base, casePath] = process.argv.slice(2);
const { tool, system } = JSON.parse(readFileSync(casePath, "utf8"));
const client = new OpenAI({ baseURL: base + "/v1", apiKey: "none", maxRetries: 0, timeout: 60000 });
let failed = 0;
const check = (name, cond, detail = "") => {
  console.log((cond ? "ok   " : "FAIL ") + name + (detail ? " (" + detail + ")" : ""));
  if (!cond) failed++;
};
const model = "m";
const ask = [{ role: "system", content: system }, { role: "user", content: "What is the weather in Paris?" }];
const G = { model, tools: [tool], temperature: 0, max_tokens: 48 };
const argsOf = (c) => { try { return JSON.parse(c.function.arguments); } catch { return null; } };

// a request with tools: the model's <tool_call> comes back as tool_calls
const r1 = await client.chat.completions.create({ ...G, messages: ask });
const m1 = r1.choices[0].message, c1 = m1.tool_calls?.[0];
check("tools: finish_reason tool_calls, content null, one call", r1.choices[0].finish_reason === "tool_calls" &&
  m1.content === null && m1.tool_calls?.length === 1, JSON.stringify(r1.choices[0]));
check("tools: the call in OpenAI's shape, its arguments a JSON string the client parses",
  c1 && /^call_/.test(c1.id) && c1.type === "function" && c1.function.name === "get_weather" &&
  typeof c1.function.arguments === "string" && argsOf(c1)?.city === "Paris", JSON.stringify(c1));

// streamed: delta.tool_calls chunks (id, type and name first, then the arguments) add up to the same call
const stream = await client.chat.completions.create({ ...G, messages: ask, stream: true });
const calls = [];
let content = "", finish = null, role = null, toolChunks = 0;
for await (const ch of stream) {
  for (const c of ch.choices) {
    if (c.delta.role) role = c.delta.role;
    if (c.delta.content) content += c.delta.content;
    for (const t of c.delta.tool_calls || []) {
      toolChunks++;
      const k = t.index;
      calls[k] ??= { id: "", type: "", function: { name: "", arguments: "" } };
      if (t.id) calls[k].id = t.id;
      if (t.type) calls[k].type = t.type;
      if (t.function?.name) calls[k].function.name += t.function.name;
      if (t.function?.arguments) calls[k].function.arguments += t.function.arguments;
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
}
check("streaming tools: delta.tool_calls add up to the non-streamed call, no content, finish_reason tool_calls",
  role === "assistant" && content === "" && finish === "tool_calls" && calls.length === 1 && toolChunks >= 2 &&
  /^call_/.test(calls[0].id) && calls[0].type === "function" && calls[0].function.name === "get_weather" &&
  calls[0].function.arguments === c1?.function.arguments, JSON.stringify({ calls, toolChunks, content, finish }));
const final = await client.chat.completions.stream({ ...G, messages: ask }).finalChatCompletion();
check("streaming tools: the SDK's stream helper assembles the call",
  final.choices[0].message.tool_calls?.[0]?.function?.name === "get_weather" &&
  argsOf(final.choices[0].message.tool_calls[0])?.city === "Paris", JSON.stringify(final.choices[0].message));

// the round trip: the assistant's call and the tool's result go back; the model answers from it
const follow = [...ask, m1, { role: "tool", tool_call_id: c1?.id ?? "x", content: "18 C" }];
const r2 = await client.chat.completions.create({ ...G, messages: follow, max_tokens: 24 });
check("round trip: an assistant message with tool_calls and a tool message are accepted and answered",
  r2.choices[0].finish_reason === "stop" && !r2.choices[0].message.tool_calls &&
  r2.choices[0].message.content.includes("18 C in Paris"), JSON.stringify(r2.choices[0].message));

// tool_choice
const named = await client.chat.completions.create({ ...G, messages: ask,
  tool_choice: { type: "function", function: { name: "get_weather" } } });
check("tool_choice {function}: the call is made", named.choices[0].finish_reason === "tool_calls" &&
  named.choices[0].message.tool_calls?.[0]?.function.name === "get_weather" && argsOf(named.choices[0].message.tool_calls[0]) !== null,
  JSON.stringify(named.choices[0].message));
// (the forced openings themselves are checked in the prompt by test_serve_tools.sh: a model this small
// need not complete a call it was not tuned to make)
const req = await client.chat.completions.create({ ...G, messages: ask, tool_choice: "required" });
check("tool_choice required: the call is made",
  req.choices[0].finish_reason === "tool_calls" && req.choices[0].message.tool_calls?.[0]?.function.name === "get_weather",
  JSON.stringify(req.choices[0].message));
const hello = [{ role: "system", content: system }, { role: "user", content: "Hello" }];
const auto = await client.chat.completions.create({ ...G, messages: hello });
check("tool_choice auto: a text answer stays content (finish_reason stop, no tool_calls)",
  auto.choices[0].finish_reason === "stop" && !auto.choices[0].message.tool_calls &&
  auto.choices[0].message.content.startsWith("Hi!"), JSON.stringify(auto.choices[0].message));
const none = await client.chat.completions.create({ ...G, messages: ask, tool_choice: "none" });
check("tool_choice none: no tool_calls", !none.choices[0].message.tool_calls && typeof none.choices[0].message.content === "string" &&
  none.choices[0].finish_reason !== "tool_calls", JSON.stringify(none.choices[0].message));

// malformed tools and tool messages: 400 naming the field
const bad = async (name, body, param, text) => {
  try {
    await client.chat.completions.create({ model, messages: ask, ...body });
    check(name, false, "no error");
  } catch (e) {
    check(name, e.status === 400 && e.error?.param === param && e.message.includes(text), `${e.status} ${e.error?.param}: ${e.message}`);
  }
};
const fn = (f) => ({ tools: [{ type: "function", function: f }] });
await bad("400: a tool name with a space", fn({ name: "get weather" }), "tools", "'tools[0].function.name'");
await bad("400: a tool without its function", { tools: [{ type: "function" }] }, "tools", "'tools[0].function'");
await bad("400: a tool type lmkit does not know", { tools: [{ type: "retrieval", function: { name: "f" } }] }, "tools", "'tools[0].type'");
await bad("400: parameters that are not a schema object", fn({ name: "f", parameters: "x" }), "tools", "'tools[0].function.parameters'");
await bad("400: an unknown field in a function", fn({ name: "f", arity: 2 }), "tools", "'tools[0].function.arity'");
await bad("400: tool_choice naming an undeclared function", { tools: [tool], tool_choice: { type: "function", function: { name: "nope" } } },
  "tool_choice", "'nope'");
await bad("400: tool_choice required without tools", { tool_choice: "required" }, "tool_choice", "declares none");
await bad("400: tool call arguments that are not JSON", { messages: [...ask, { role: "assistant", content: null,
  tool_calls: [{ id: "c", type: "function", function: { name: "get_weather", arguments: "{city" } }] }] }, "messages",
  "'messages[2].tool_calls[0].function.arguments'");

// the calculator (lmkit serve --calc): the model writes the call, the server splices the result and goes on
const calc = await client.chat.completions.create({ model, messages: [{ role: "user", content: "go" }], temperature: 0, max_tokens: 24 });
check("--calc: the calculator's result is spliced after the model's call",
  calc.choices[0].message.content.startsWith("<|calc|>77*33<|/calc|> \u2192 2541"), JSON.stringify(calc.choices[0].message.content));

process.exit(failed ? 1 : 0);
