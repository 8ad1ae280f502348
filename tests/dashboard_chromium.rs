//! The dashboard in a real browser: headless Chromium (Debian's `chromium`,
//! which `.ci/run` installs) driven over the DevTools protocol against a
//! 3-node cluster. The operator opens the printed dashboard URL; the page
//! must list 3 Alive members and fault rules as they are set. Then pages of
//! two other origins (another port of 127.0.0.1, which shares the cookie's
//! site, and `localhost`) try to change the cluster with no-cors fetches and
//! forms while the operator's cookie is in the browser: nothing changes.
//! Back on the dashboard (the cookie, no token in the URL), a stopped node
//! shows as not Alive within 20 s without a reload.
//!
//! Without Chromium the test says so loudly and passes, unless
//! `ROSTER_REQUIRE_CHROMIUM` is set (as `.ci/run` does).
//!
//! These tests wait on real processes, so they read the real clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::{base_port, http_get, roster_in as roster, roster_ok, wait_for};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Cleanup {
    dir: PathBuf,
    browser: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(b) = &mut self.browser {
            let _ = b.kill();
            let _ = b.wait();
        }
        let _ = roster(&self.dir, &["cluster", "destroy"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A DevTools session on one page.
struct Page {
    ws: tungstenite::WebSocket<TcpStream>,
    next: u64,
}

impl Page {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let m = self.ws.read().unwrap();
            if let Ok(text) = m.to_text()
                && let Ok(v) = serde_json::from_str::<Value>(text)
                && v["id"] == id
            {
                return v;
            }
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        let v = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        v["result"]["result"]["value"].clone()
    }
}

/// Serves `page` to every request on `listener` until `stop` (bounded: at
/// most 200 requests, each read with a timeout).
fn serve_page(listener: TcpListener, page: String, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut served = 0;
    while !stop.load(Ordering::Relaxed) && served < 200 && Instant::now() < deadline {
        match listener.accept() {
            Ok((mut s, _)) => {
                served += 1;
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A page that tries every change it can against the nodes at `ports`
/// without the token: no-cors fetches (which carry the cookies a browser
/// would send) and auto-submitted `text/plain` forms into hidden frames. It
/// sets `window.attackDone` once every fetch settled and every frame loaded
/// (or 5 s after the fetches, for a frame whose target went away).
fn attack_page(ports: &[u16]) -> String {
    let ports = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    format!(
        r#"<!doctype html><title>elsewhere</title><body><script>
const ports = [{ports}];
const reqs = [];
let forms = 0, loaded = 0;
function form(action, name, value) {{
  const f = document.createElement('iframe');
  f.name = 'f' + forms; forms++;
  f.addEventListener('load', () => loaded++);
  document.body.appendChild(f);
  const fm = document.createElement('form');
  fm.method = 'POST'; fm.action = action; fm.enctype = 'text/plain'; fm.target = f.name;
  const i = document.createElement('input'); i.name = name; i.value = value;
  fm.appendChild(i); document.body.appendChild(fm); fm.submit();
}}
for (const p of ports) {{
  const base = 'http://127.0.0.1:' + p;
  const o = (method, body) => ({{method, body, mode: 'no-cors', credentials: 'include'}});
  reqs.push(fetch(base + '/v1/chaos', o('POST', JSON.stringify({{drop: 1}}))));
  reqs.push(fetch(base + '/v1/meta/attack', o('PUT', 'pwned')));
  reqs.push(fetch(base + '/v1/meta/attack', o('POST', JSON.stringify({{expect: null, value: 'pwned'}}))));
  reqs.push(fetch(base + '/v1/state/attack', o('PUT', 'pwned')));
  reqs.push(fetch(base + '/v1/leave', o('POST', '')));
  form(base + '/v1/chaos', '{{"drop":1,"x":"', '"}}');
  form(base + '/v1/meta/attack', '{{"expect":null,"value":"pwned","x":"', '"}}');
  form(base + '/v1/leave', 'a', 'b');
}}
let settled = null;
Promise.allSettled(reqs).then(() => {{ settled = Date.now(); }});
// Done once every fetch settled and every frame loaded; a frame whose
// target stopped answering may never fire `load`, so at most 5 s more.
setInterval(() => {{
  if (settled !== null && (loaded === forms || Date.now() - settled > 5000)) window.attackDone = true;
}}, 50);
</script>"#
    )
}

#[test]
fn dashboard_shows_members_live_in_headless_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
    else {
        if std::env::var_os("ROSTER_REQUIRE_CHROMIUM").is_some() {
            panic!("headless Chromium is needed (apt-get install chromium)");
        }
        eprintln!(
            "\n*** SKIPPED dashboard_shows_members_live_in_headless_chromium: no chromium on PATH \
             (apt-get install chromium; .ci/run installs it and sets ROSTER_REQUIRE_CHROMIUM) ***\n"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("roster-dash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        browser: None,
    };
    // A 3-node cluster on free ports.
    let port = base_port();
    roster_ok(
        &dir,
        &[
            "cluster",
            "init",
            "--nodes",
            "3",
            "--base-port",
            &port.to_string(),
        ],
    );
    roster_ok(&dir, &["cluster", "start", "--detach"]);
    let http0 = format!("127.0.0.1:{}", port + 1);
    let https: Vec<u16> = (0..3).map(|i| port + 1 + 2 * i).collect();
    let token = std::fs::read_to_string(dir.join(".roster/cluster/http-token"))
        .expect("cluster init writes the operator token");
    let token = token.trim();

    // Chromium with DevTools on a port it picks (written to its profile dir).
    let profile = dir.join("chromium-profile");
    let browser = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            "about:blank",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    cleanup.browser = Some(browser);
    let devtools = wait_for(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(profile.join("DevToolsActivePort")).ok()?;
        let port: u16 = text.lines().next()?.trim().parse().ok()?;
        Some(format!("127.0.0.1:{port}"))
    })
    .expect("Chromium did not open its DevTools port");
    let ws_url = wait_for(Duration::from_secs(10), || {
        let list: Value = serde_json::from_str(&http_get(&devtools, "/json/list")?).ok()?;
        list.as_array()?
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
    })
    .expect("no page target");
    let stream = TcpStream::connect(&devtools).unwrap();
    // A stuck browser fails the test instead of hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let (ws, _) = tungstenite::client(ws_url.as_str(), stream).unwrap();
    let mut page = Page { ws, next: 0 };
    // The operator opens the printed URL: the token becomes a cookie.
    page.call(
        "Page.navigate",
        json!({"url": format!("http://{http0}/?token={token}")}),
    );
    wait_for(Duration::from_secs(10), || {
        (page.eval("location.search") == "").then_some(())
    })
    .expect("the token stays in the address bar");

    let alive = r#"document.querySelectorAll('tr[data-state="alive"]').length"#;
    let t = Instant::now();
    wait_for(Duration::from_secs(30), || {
        (page.eval(alive) == 3).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the page never listed 3 alive members: {}",
            page.eval("document.body.innerText")
        )
    });
    println!("page lists 3 alive members after {:?}", t.elapsed());
    // The leader and voters show once the metadata cluster formed.
    wait_for(Duration::from_secs(30), || {
        page.eval("document.getElementById('raft').textContent")
            .as_str()
            .filter(|s| s.contains("leader node-"))
            .map(|_| ())
    })
    .expect("the page never showed the metadata leader");

    // Fault rules set on node 0 show on its page; healing clears them.
    roster_ok(
        &dir,
        &[
            "cluster", "chaos", "--node", "0", "set", "--delay", "5", "--jitter", "2",
        ],
    );
    let chaos = "document.getElementById('chaos').textContent";
    let shown = wait_for(Duration::from_secs(10), || {
        page.eval(chaos)
            .as_str()
            .filter(|s| s.contains("delay 5 ms") && s.contains("jitter 2 ms"))
            .map(str::to_owned)
    })
    .expect("the page never showed the fault rules");
    println!("page shows {shown:?}");
    roster_ok(&dir, &["cluster", "chaos", "--node", "0", "heal"]);
    wait_for(Duration::from_secs(10), || {
        (page.eval(chaos).as_str() == Some("")).then_some(())
    })
    .expect("the page still shows fault rules after healing");

    // Pages of other origins try to change the cluster while the
    // operator's cookie is in the browser. Each node's generation before:
    // one that left and was restarted by the supervisor would show a new one.
    let generation = |a: &str| -> Value {
        let v: Value = serde_json::from_str(&http_get(a, "/v1/status").unwrap()).unwrap();
        v["node"]["generation"].clone()
    };
    let before: Vec<Value> = https
        .iter()
        .map(|p| generation(&format!("127.0.0.1:{p}")))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let evil = listener.local_addr().unwrap().port();
    let server = {
        let (page, stop) = (attack_page(&https), stop.clone());
        std::thread::spawn(move || serve_page(listener, page, stop))
    };
    for origin in [
        format!("http://127.0.0.1:{evil}/"),
        format!("http://localhost:{evil}/"),
    ] {
        page.call("Page.navigate", json!({ "url": origin }));
        wait_for(Duration::from_secs(20), || {
            (page.eval("window.attackDone === true") == true).then_some(())
        })
        .unwrap_or_else(|| panic!("the page at {origin} did not finish its requests"));
        println!("{origin} sent its requests");
    }
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    // Nothing changed: no rules, no keys, every node running and Alive.
    for (p, gen_before) in https.iter().zip(&before) {
        let a = format!("127.0.0.1:{p}");
        assert_eq!(&generation(&a), gen_before, "{a} left and came back");
        let chaos: Value = serde_json::from_str(&http_get(&a, "/v1/chaos").unwrap()).unwrap();
        assert!(chaos["rules"].is_null(), "{a}: {chaos}");
        let st: Value = serde_json::from_str(&http_get(&a, "/v1/state/attack").unwrap()).unwrap();
        assert_eq!(st["error"], "unknown_key", "{a}: {st}");
        let members: Value = serde_json::from_str(&http_get(&a, "/v1/members").unwrap()).unwrap();
        let alive = members
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"] == "alive")
            .count();
        assert_eq!(alive, 3, "{a}: {members}");
    }
    let meta: Value = serde_json::from_str(&http_get(&http0, "/v1/meta/attack").unwrap()).unwrap();
    assert_eq!(meta["error"], "unknown_key", "{meta}");
    println!("no page of another origin changed anything");

    // Back on the dashboard, by the cookie alone.
    page.call("Page.navigate", json!({"url": format!("http://{http0}/")}));
    wait_for(Duration::from_secs(30), || {
        (page.eval(alive) == 3).then_some(())
    })
    .expect("the dashboard does not load from the cookie");

    // Stop node 2; the same page (no reload) shows it as not alive.
    roster_ok(&dir, &["cluster", "stop", "--node", "2"]);
    let stopped = Instant::now();
    let state =
        r#"(document.querySelector('tr[data-member="node-2"]') || {dataset: {}}).dataset.state"#;
    let seen = wait_for(Duration::from_secs(20), || {
        page.eval(state)
            .as_str()
            .filter(|s| *s != "alive")
            .map(str::to_owned)
    })
    .expect("the page still shows node-2 alive 20 s after it stopped");
    println!(
        "page shows node-2 {seen} {:?} after it stopped, without a reload",
        stopped.elapsed()
    );
}
