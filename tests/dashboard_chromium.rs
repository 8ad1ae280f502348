//! The dashboard in a real browser: headless Chromium (Debian's `chromium`,
//! which `.ci/run` installs) driven over the DevTools protocol against a
//! 3-node cluster. The page must list 3 Alive members, and show a stopped
//! node as not Alive within 20 s without a reload.
//!
//! These tests wait on real processes, so they read the real clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::{base_port, http_get, roster_in as roster, roster_ok, wait_for};

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

#[test]
fn dashboard_shows_members_live_in_headless_chromium() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .expect("headless Chromium is needed (apt-get install chromium; .ci/run installs it)");
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
    page.call("Page.navigate", json!({"url": format!("http://{http0}/")}));

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
