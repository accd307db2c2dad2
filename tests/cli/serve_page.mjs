// serve_page.mjs — the browser side of test_serve_page.sh: headless Chromium (Debian's, driven by
// npm playwright-core from third_party/npm) opens lmkit serve's chat page, types two messages and
// waits for each streamed answer.
//
//   node serve_page.mjs BASE_URL CHROMIUM
// Prints one "ok   ..." / "FAIL ..." line per check; exits 1 if any failed.
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.LMKIT_SRC || path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const pw = await import(pathToFileURL(path.join(root, "third_party/npm/node_modules/playwright-core/index.mjs")).href);
const [base, exe] = process.argv.slice(2);
let failed = 0;
const check = (name, cond, detail = "") => {
  console.log((cond ? "ok   " : "FAIL ") + name + (detail ? " (" + detail + ")" : ""));
  if (!cond) failed++;
};

const browser = await pw.chromium.launch({ executablePath: exe, headless: true, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  const bodies = [];
  page.on("request", r => { if (r.url().endsWith("/v1/chat/completions")) bodies.push(JSON.parse(r.postData())); });
  await page.goto(base + "/?temperature=0&max_tokens=12");
  check("the page loads and names the model", (await page.title()) === "lmkit chat" &&
    await page.waitForFunction(() => document.getElementById("model").textContent.length > 0, null, { timeout: 10000 }).then(() => true, () => false));
  // first message: watch the answer grow while it streams
  await page.fill("#input", "hello, how are you?");
  await page.press("#input", "Enter");
  const lengths = new Set();
  for (let i = 0; i < 400; i++) {
    const st = await page.evaluate(() => {
      const els = document.querySelectorAll(".msg.assistant, .msg.error"), e = els[els.length - 1];
      return e ? [e.dataset.state, e.textContent.length] : [null, 0];
    });
    lengths.add(st[1]);
    if (st[0] === "done" || st[0] === "error") break;
    await page.waitForTimeout(5);
  }
  const a1 = await page.$$eval(".msg.assistant", els => els.map(e => [e.dataset.state, e.textContent]));
  check("the first answer streams in and completes", a1.length === 1 && a1[0][0] === "done" && a1[0][1].length > 0,
    `${lengths.size} lengths seen while streaming, ${JSON.stringify(a1[0]?.[1])}`);
  check("the page asked for a stream with the address's settings", bodies.length === 1 && bodies[0].stream === true &&
    bodies[0].messages.length === 1 && bodies[0].temperature === 0 && bodies[0].max_tokens === 12);
  const api = await (await fetch(base + "/v1/chat/completions", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "hello, how are you?" }], temperature: 0, max_tokens: 12 }) })).json();
  check("the streamed answer on the page is the API's greedy answer", a1[0]?.[1] === api.choices[0].message.content,
    JSON.stringify(api.choices[0].message.content));
  // second message: the conversation so far goes with it
  await page.fill("#input", "and then?");
  await page.press("#input", "Enter");
  await page.waitForFunction(() => [...document.querySelectorAll(".msg.assistant")].length === 2 &&
    document.querySelectorAll(".msg.assistant")[1].dataset.state === "done", null, { timeout: 60000 });
  const roles = bodies[1]?.messages.map(m => m.role).join(",");
  check("the second request carries the conversation (user, assistant, user)", roles === "user,assistant,user" &&
    bodies[1].messages[1].content === a1[0][1], roles);
  const users = await page.$$eval(".msg.user", els => els.map(e => e.textContent));
  check("both user messages are shown", users.join("|") === "hello, how are you?|and then?");
  // retrieval: the page names the index; the answer lists its sources
  await page.goto(base + "/?temperature=0&max_tokens=4&index=docs");
  await page.fill("#input", "What is the capital of Zorbania?");
  await page.press("#input", "Enter");
  await page.waitForFunction(() => ["done", "error"].includes(document.querySelector(".msg.assistant, .msg.error")?.dataset.state),
    null, { timeout: 60000 });
  const src = await page.$eval(".msg.assistant .sources", e => e.textContent).catch(() => "");
  check("a retrieval answer shows its sources", /^Sources: \[1\] .*zorbania\.txt, lines \d+-\d+/.test(src), src);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
