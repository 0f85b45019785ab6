/**
 * The peers of tests/benchmarks.ts: what a Python or Node programmer would write for the same
 * job, each a whole program the bench writes to a temporary directory and runs. Each times itself
 * the way the lessons do (from the first message received, or after a warm-up round trip, to the
 * end), checks what it received, and prints one line: its rate per second.
 *
 * Usage: `python3 <file> N` and `node <file> parent N` (a Node program starts itself as its
 * child with `child`). The messages are the lessons': `{"seq":7,"text":"Number 7"}` one way, and
 * `{"id":7,"text":"7:xxxxxxxxxxxxxx"}` answered by the same id with the text in capitals.
 *
 * @module
 */

/** Python, one way: `os.pipe()` and `os.fork()`, the child writing through a 64 KiB buffer. */
export const PY_PIPE_MESSAGES = `import json, os, sys, time
n = int(sys.argv[1])
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    with os.fdopen(w, "wb", buffering=65536) as out:
        for seq in range(n):
            out.write((json.dumps({"seq": seq, "text": f"Number {seq}"}) + "\\n").encode())
    os._exit(0)
os.close(w)
seen = 0
with os.fdopen(r, "rb", buffering=65536) as pipe:
    for line in pipe:
        if seen == 0:
            start = time.perf_counter()
        if json.loads(line)["seq"] != seen:
            sys.exit(f"message {seen} is lost or late")
        seen += 1
seconds = time.perf_counter() - start
_, status = os.waitpid(pid, 0)
if status != 0 or seen != n:
    sys.exit(f"got {seen} of {n} messages, status {status}")
print(round(n / seconds))
`;

/** Python, one way: `multiprocessing.Pipe(duplex=False)`, one `send_bytes` per message. */
export const PY_MP_MESSAGES = `import json, sys, time
from multiprocessing import Pipe, Process

def child(conn, n, other_end):
    other_end.close()  # so that this child sees its writes fail once the parent is gone
    for seq in range(n):
        conn.send_bytes(json.dumps({"seq": seq, "text": f"Number {seq}"}).encode())
    conn.close()

if __name__ == "__main__":
    n = int(sys.argv[1])
    reader, writer = Pipe(duplex=False)
    process = Process(target=child, args=(writer, n, reader))
    process.start()
    writer.close()
    seen = 0
    try:
        while True:
            data = reader.recv_bytes()
            if seen == 0:
                start = time.perf_counter()
            if json.loads(data)["seq"] != seen:
                sys.exit(f"message {seen} is lost or late")
            seen += 1
    except EOFError:
        pass
    seconds = time.perf_counter() - start
    process.join()
    if process.exitcode != 0 or seen != n:
        sys.exit(f"got {seen} of {n} messages, exit code {process.exitcode}")
    print(round(n / seconds))
`;

/** Node, one way: `spawn` with a stdout pipe, the child writing NDJSON in 64 KiB batches. */
export const NODE_NDJSON_MESSAGES = `const { spawn } = require("node:child_process");
const [role, count] = process.argv.slice(2);
const n = Number(count);
if (role === "child") {
  let batch = "";
  for (let seq = 0; seq < n; seq++) {
    batch += JSON.stringify({ seq, text: \`Number \${seq}\` }) + "\\n";
    if (batch.length >= 65536) {
      process.stdout.write(batch);
      batch = "";
    }
  }
  process.stdout.write(batch);
} else {
  const child = spawn(process.execPath, [__filename, "child", count], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let start = 0, seen = 0, partial = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk) => {
    start ||= performance.now();
    const lines = (partial + chunk).split("\\n");
    partial = lines.pop();
    for (const line of lines) {
      if (JSON.parse(line).seq !== seen++) throw new Error(\`message \${seen - 1} is lost or late\`);
    }
  });
  child.on("close", (code) => {
    const seconds = (performance.now() - start) / 1000;
    if (code !== 0 || seen !== n) {
      console.error(\`got \${seen} of \${n} messages, exit code \${code}\`);
      process.exit(1);
    }
    console.log(Math.round(n / seconds));
  });
}
`;

/** Node, one way: `fork` and its IPC channel, one `process.send` per message. */
export const NODE_IPC_MESSAGES = `const { fork } = require("node:child_process");
const [role, count] = process.argv.slice(2);
const n = Number(count);
if (role === "child") {
  for (let seq = 0; seq < n; seq++) process.send({ seq, text: \`Number \${seq}\` });
  process.send({ done: true }, () => process.disconnect());
} else {
  const child = fork(__filename, ["child", count]);
  let start = 0, seen = 0;
  child.on("message", (message) => {
    start ||= performance.now();
    if (message.done) {
      const seconds = (performance.now() - start) / 1000;
      if (seen !== n) {
        console.error(\`got \${seen} of \${n} messages\`);
        process.exit(1);
      }
      console.log(Math.round(n / seconds));
      return;
    }
    if (message.seq !== seen++) throw new Error(\`message \${seen - 1} is lost or late\`);
  });
}
`;

/** Python, round trips: `multiprocessing.Pipe()` (duplex), `send_bytes` / `recv_bytes`. */
export const PY_MP_ROUND_TRIPS = `import json, sys, time
from multiprocessing import Pipe, Process

def child(conn, other_end):
    other_end.close()  # a forked child holds both ends: close the parent's, or EOF never comes
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except EOFError:
            return
        conn.send_bytes(json.dumps({"id": request["id"], "text": request["text"].upper()}).encode())

if __name__ == "__main__":
    n = int(sys.argv[1])
    mine, theirs = Pipe()
    process = Process(target=child, args=(theirs, mine))
    process.start()
    theirs.close()
    for id in range(n + 1):  # request 0 is a warm-up: the clock starts when it is answered
        if id == 1:
            start = time.perf_counter()
        text = f"{id}:".ljust(16, "x")
        mine.send_bytes(json.dumps({"id": id, "text": text}).encode())
        answer = json.loads(mine.recv_bytes())
        if answer["id"] != id or answer["text"] != text.upper():
            sys.exit(f"answer {answer} does not match request {id}")
    seconds = time.perf_counter() - start
    mine.close()
    process.join()
    print(round(n / seconds))
`;

/** Python, round trips: two `os.pipe()`s and `os.fork()`, `write` + `flush`, `readline`. */
export const PY_PIPE_ROUND_TRIPS = `import json, os, sys, time
n = int(sys.argv[1])
to_child, from_parent = os.pipe()
to_parent, from_child = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(from_parent)
    os.close(to_parent)
    with os.fdopen(to_child, "rb") as requests, os.fdopen(from_child, "wb") as answers:
        for line in iter(requests.readline, b""):
            request = json.loads(line)
            answer = {"id": request["id"], "text": request["text"].upper()}
            answers.write((json.dumps(answer) + "\\n").encode())
            answers.flush()
    os._exit(0)
os.close(to_child)
os.close(from_child)
requests = os.fdopen(from_parent, "wb")
answers = os.fdopen(to_parent, "rb")
for id in range(n + 1):  # request 0 is a warm-up: the clock starts when it is answered
    if id == 1:
        start = time.perf_counter()
    text = f"{id}:".ljust(16, "x")
    requests.write((json.dumps({"id": id, "text": text}) + "\\n").encode())
    requests.flush()
    answer = json.loads(answers.readline())
    if answer["id"] != id or answer["text"] != text.upper():
        sys.exit(f"answer {answer} does not match request {id}")
seconds = time.perf_counter() - start
requests.close()
os.waitpid(pid, 0)
print(round(n / seconds))
`;

/** Node, round trips: `fork` and its IPC channel, `send` and `on("message")`. */
export const NODE_IPC_ROUND_TRIPS = `const { fork } = require("node:child_process");
const [role, count] = process.argv.slice(2);
const n = Number(count);
if (role === "child") {
  process.on("message", ({ id, text }) => process.send({ id, text: text.toUpperCase() }));
} else {
  const child = fork(__filename, ["child"]);
  let start = 0, id = 0, text = "";
  const send = () => {
    text = \`\${id}:\`.padEnd(16, "x");
    child.send({ id, text });
  };
  child.on("message", (answer) => {
    if (answer.id !== id || answer.text !== text.toUpperCase()) {
      throw new Error(\`answer \${JSON.stringify(answer)} does not match request \${id}\`);
    }
    if (id === 0) start = performance.now(); // request 0 is a warm-up
    if (id === n) {
      console.log(Math.round(n / ((performance.now() - start) / 1000)));
      child.disconnect();
      return;
    }
    id++;
    send();
  });
  send();
}
`;

/** Node, round trips: `spawn` with stdin and stdout pipes, one NDJSON line each way. */
export const NODE_NDJSON_ROUND_TRIPS = `const { spawn } = require("node:child_process");
const [role, count] = process.argv.slice(2);
const n = Number(count);
function lines(stream, onLine) {
  let partial = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    const parts = (partial + chunk).split("\\n");
    partial = parts.pop();
    for (const line of parts) onLine(line);
  });
}
if (role === "child") {
  lines(process.stdin, (line) => {
    const { id, text } = JSON.parse(line);
    process.stdout.write(JSON.stringify({ id, text: text.toUpperCase() }) + "\\n");
  });
} else {
  const child = spawn(process.execPath, [__filename, "child"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  let start = 0, id = 0, text = "";
  const send = () => {
    text = \`\${id}:\`.padEnd(16, "x");
    child.stdin.write(JSON.stringify({ id, text }) + "\\n");
  };
  lines(child.stdout, (line) => {
    const answer = JSON.parse(line);
    if (answer.id !== id || answer.text !== text.toUpperCase()) {
      throw new Error(\`answer \${line} does not match request \${id}\`);
    }
    if (id === 0) start = performance.now(); // request 0 is a warm-up
    if (id === n) {
      console.log(Math.round(n / ((performance.now() - start) / 1000)));
      child.stdin.end();
      return;
    }
    id++;
    send();
  });
  send();
}
`;
