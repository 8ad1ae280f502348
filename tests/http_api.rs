//! Every HTTP route against a real node, including bad input.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster::Roster;
use roster::node::{Config, NodeId};
use roster::runtime::tls::ClusterCa;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The operator token every test server takes.
const TOKEN: &str = "test-token-0123456789abcdef";

fn access() -> roster::api::Access {
    roster::api::Access::new(roster::api::Token::parse(TOKEN, "test").unwrap())
}

/// One HTTP/1.1 request with the operator token over a fresh connection;
/// returns (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (s, _, b) = raw(
        addr,
        method,
        path,
        &format!("Host: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n"),
        body,
    )
    .await;
    (s, b)
}

/// One HTTP/1.1 request with exactly the headers given (each ending in
/// CRLF); returns (status, head, body).
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text[9..12].parse().unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_owned(), b.to_owned()))
        .unwrap_or_default();
    (status, head, body)
}

/// Node `a` on loopback, alone.
async fn node_a(ca: &ClusterCa) -> Arc<Roster> {
    Arc::new(
        Roster::builder()
            .tls(ca.issue(&NodeId::new("a").unwrap()).unwrap())
            .bind("127.0.0.1:0".parse().unwrap())
            .config(Config::local())
            .start()
            .await
            .unwrap(),
    )
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn assert_json_error(status: u16, body: &str, expect_status: u16, error: &str) {
    assert_eq!(status, expect_status, "{body}");
    let v = json(body);
    assert_eq!(v["error"], error, "{body}");
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_and_bad_input_gets_a_json_4xx() {
    let ca = ClusterCa::generate("test").unwrap();
    let roster = Roster::builder()
        .tls(ca.issue(&NodeId::new("a").unwrap()).unwrap())
        .bind("127.0.0.1:0".parse().unwrap())
        .tag("zone", "z1")
        .config(Config::local())
        .start()
        .await
        .unwrap();
    let roster = Arc::new(roster);
    let server = roster::api::serve(roster.clone(), "127.0.0.1:0".parse().unwrap(), access())
        .await
        .unwrap();
    let addr = server.local_addr();

    let (s, b) = http(addr, "GET", "/health", b"").await;
    assert_eq!(s, 200);
    assert_eq!(json(&b)["status"], "ok");

    let (s, b) = http(addr, "GET", "/v1/status", b"").await;
    assert_eq!(s, 200);
    let v = json(&b);
    assert_eq!(v["node"]["id"], "a");
    assert_eq!(v["members"]["alive"], 1);

    let (s, b) = http(addr, "GET", "/v1/members", b"").await;
    assert_eq!(s, 200);
    let v = json(&b);
    assert_eq!(v[0]["id"], "a");
    assert_eq!(v[0]["state"], "alive");
    assert_eq!(v[0]["tags"]["zone"], "z1");

    let (s, b) = http(addr, "PUT", "/v1/state/service", b"web").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(addr, "GET", "/v1/state/service", b"").await;
    assert_eq!(s, 200);
    assert_eq!(json(&b)["value"], "web");
    let (s, b) = http(addr, "GET", "/v1/state/service?node=a", b"").await;
    assert_eq!((s, json(&b)["value"].clone()), (200, Value::from("web")));

    // Keys may contain '/', raw or escaped.
    let (s, b) = http(addr, "PUT", "/v1/state/svc/web/port", b"8080").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(addr, "GET", "/v1/state/svc%2Fweb%2Fport", b"").await;
    assert_eq!(s, 200, "{b}");
    let v = json(&b);
    assert_eq!(
        (v["key"].clone(), v["value"].clone()),
        ("svc/web/port".into(), "8080".into())
    );
    assert_eq!(v["encoding"], "utf-8");
    let (s, b) = http(addr, "GET", "/v1/meta/config/a/b", b"").await;
    assert_json_error(s, &b, 503, "no_cluster");
    // It says how far the bootstrap got and what to do.
    let detail = json(&b)["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        detail.contains("3 live members")
            && detail.contains("sees 1")
            && detail.contains("--bootstrap-expect"),
        "{detail}"
    );
    // Values are bytes: what is not UTF-8 comes back base64-encoded, or
    // as the bytes themselves with ?raw=true.
    let bin = [0xffu8, 0x00, 0xfe, b'a'];
    let (s, b) = http(addr, "PUT", "/v1/state/bin", &bin).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(addr, "GET", "/v1/state/bin", b"").await;
    assert_eq!(s, 200, "{b}");
    let v = json(&b);
    assert_eq!(
        (v["value"].clone(), v["encoding"].clone()),
        ("/wD+YQ==".into(), "base64".into())
    );
    let auth = format!("Host: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n");
    let (s, head, _) = raw(addr, "GET", "/v1/state/bin?raw=true", &auth, b"").await;
    let head = head.to_ascii_lowercase();
    assert_eq!(s, 200);
    assert!(
        head.contains("content-type: application/octet-stream")
            && head.contains("content-length: 4"),
        "{head}"
    );

    // Unknown key, unknown route, bad node name.
    let (s, b) = http(addr, "GET", "/v1/state/missing", b"").await;
    assert_json_error(s, &b, 404, "unknown_key");
    let (s, b) = http(addr, "GET", "/v2/nothing", b"").await;
    assert_json_error(s, &b, 404, "not_found");
    let (s, b) = http(addr, "GET", "/v1/state/service?node=bad%20name", b"").await;
    assert_json_error(s, &b, 400, "bad_node");

    // Value over the state limit, body over the request limit.
    let (s, b) = http(addr, "PUT", "/v1/state/big", &[b'x'; 1000]).await;
    assert_json_error(s, &b, 400, "invalid_state");
    let (s, b) = http(
        addr,
        "PUT",
        "/v1/state/huge",
        &vec![b'x'; roster::api::MAX_BODY_BYTES + 1],
    )
    .await;
    assert_json_error(s, &b, 413, "body_too_large");
    let long_key = "k".repeat(200);
    let (s, b) = http(addr, "PUT", &format!("/v1/state/{long_key}"), b"v").await;
    assert_json_error(s, &b, 400, "invalid_state");

    // Delete, then delete again.
    let (s, _) = http(addr, "DELETE", "/v1/state/service", b"").await;
    assert_eq!(s, 200);
    let (s, b) = http(addr, "DELETE", "/v1/state/service", b"").await;
    assert_json_error(s, &b, 404, "unknown_key");

    let (s, b) = http(addr, "GET", "/v1/events", b"").await;
    assert_eq!(s, 200);
    assert!(json(&b).is_array());

    let (s, b) = http(addr, "GET", "/", b"").await;
    assert_eq!(s, 200);
    assert!(b.contains("<title>roster</title>") && b.contains("/v1/members"));
    // Self-contained: no external scripts or styles.
    assert!(!b.contains("http://") && !b.contains("https://"));

    // Metadata and placement on a lone node: no cluster forms (it waits for
    // 3 members), and the routes say so.
    let (s, b) = http(addr, "GET", "/v1/meta/k", b"").await;
    assert_json_error(s, &b, 503, "no_cluster");
    let (s, b) = http(addr, "PUT", "/v1/meta/k", b"v").await;
    assert_json_error(s, &b, 503, "no_cluster");
    let (s, b) = http(addr, "POST", "/v1/meta/k", b"{oops").await;
    assert_json_error(s, &b, 400, "bad_json");
    let (s, b) = http(addr, "GET", "/v1/meta?prefix=a&stale=true", b"").await;
    assert_json_error(s, &b, 503, "no_cluster");
    let (s, b) = http(addr, "PUT", &format!("/v1/meta/{}", "k".repeat(300)), b"v").await;
    assert_json_error(s, &b, 400, "invalid_request");
    let (s, b) = http(addr, "GET", "/v1/voters", b"").await;
    assert_eq!(s, 200);
    let v = json(&b);
    assert_eq!(
        (v["role"].clone(), v["quorum"].clone()),
        (Value::from("non-voter"), Value::from(false))
    );
    let (s, b) = http(addr, "GET", "/v1/partitions", b"").await;
    assert_json_error(s, &b, 503, "no_placement");
    let (s, b) = http(addr, "GET", "/v1/partitions/key/user:1", b"").await;
    assert_json_error(s, &b, 503, "no_placement");
    let (s, b) = http(addr, "GET", "/v1/leave", b"").await;
    assert_json_error(s, &b, 405, "method_not_allowed");

    // Reserved keys: tags and roster's own state, roster's metadata prefix.
    for key in ["tag:zone", "tag:owner", "tag:voter", "roster:raft"] {
        let (s, b) = http(addr, "PUT", &format!("/v1/state/{key}"), b"x").await;
        assert_json_error(s, &b, 400, "reserved_key");
        let (s, b) = http(addr, "DELETE", &format!("/v1/state/{key}"), b"").await;
        assert_json_error(s, &b, 400, "reserved_key");
    }
    let (s, b) = http(addr, "PUT", "/v1/meta/roster%2Fcerts", b"x").await;
    assert_json_error(s, &b, 400, "reserved_key");
    let (s, b) = http(addr, "GET", "/v1/members", b"").await;
    assert_eq!(s, 200);
    assert_eq!(json(&b)[0]["tags"]["zone"], "z1", "the tag is unchanged");

    // Tags through their own routes (the agent's operator changing them at
    // runtime): set, listed, removed; bad names and values refused.
    let (s, b) = http(addr, "PUT", "/v1/tags/zone", b"z2").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(addr, "GET", "/v1/tags", b"").await;
    assert_eq!(
        (s, json(&b)["tags"]["zone"].clone()),
        (200, "z2".into()),
        "{b}"
    );
    let (s, b) = http(addr, "PUT", "/v1/tags/bad%20name", b"x").await;
    assert_json_error(s, &b, 400, "invalid_tag");
    let (s, b) = http(addr, "PUT", "/v1/tags/bin", &[0xff, 0xfe]).await;
    assert_json_error(s, &b, 400, "invalid_tag");
    let (s, b) = http(addr, "DELETE", "/v1/tags/zone", b"").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(addr, "DELETE", "/v1/tags/zone", b"").await;
    assert_json_error(s, &b, 404, "unknown_tag");
    // Joins: bad bodies and addresses are 400s with a reason.
    for (body, error) in [
        (&b"{"[..], "bad_json"),
        (b"{\"addrs\": []}", "invalid_request"),
        (b"{\"addrs\": [\"no-port\"]}", "invalid_address"),
        (b"{\"addrs\": [\"nohost.invalid:1\"]}", "unresolvable"),
    ] {
        let (s, b) = http(addr, "POST", "/v1/join", body).await;
        assert_json_error(s, &b, 400, error);
    }
    let (s, b) = http(addr, "POST", "/v1/join", b"{\"addrs\": [\"127.0.0.1:9\"]}").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(json(&b)["addrs"][0], "127.0.0.1:9");

    // Leave through the API: accepted, then the node stops.
    let (s, b) = http(addr, "POST", "/v1/leave", b"").await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(json(&b)["leaving"], true);
    tokio::time::timeout(Duration::from_secs(5), roster.stopped())
        .await
        .expect("the node stops after POST /v1/leave");
    assert!(roster.is_leaving());
    let (s, b) = http(addr, "GET", "/health", b"").await;
    assert_json_error(s, &b, 503, "node_stopped");

    server.stop().await;
}

/// Every route but `/health` needs the token; a foreign `Host` or a foreign
/// `Origin` on a change is refused whatever the credential; the dashboard
/// URL's token becomes an HttpOnly SameSite=Strict cookie, which reads with
/// it but changes only with the anti-forgery header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_token_its_own_host_and_its_own_origin() {
    let ca = ClusterCa::generate("test").unwrap();
    let roster = node_a(&ca).await;
    let server = roster::api::serve(
        roster.clone(),
        "127.0.0.1:0".parse().unwrap(),
        access().allow_host("roster.example"),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let host = format!("Host: {addr}\r\n");
    let bearer = format!("{host}Authorization: Bearer {TOKEN}\r\n");
    let routes: [(&str, &str); 19] = [
        ("GET", "/"),
        ("GET", "/metrics"),
        ("GET", "/v1/status"),
        ("GET", "/v1/members"),
        ("GET", "/v1/events"),
        ("GET", "/v1/events/stream"),
        ("GET", "/v1/state/k"),
        ("PUT", "/v1/state/k"),
        ("DELETE", "/v1/state/k"),
        ("GET", "/v1/meta/k"),
        ("PUT", "/v1/meta/k"),
        ("POST", "/v1/meta/k"),
        ("GET", "/v1/voters"),
        ("POST", "/v1/chaos"),
        ("POST", "/v1/leave"),
        ("POST", "/v1/join"),
        ("GET", "/v1/tags"),
        ("PUT", "/v1/tags/zone"),
        ("DELETE", "/v1/tags/zone"),
    ];
    for (m, p) in routes {
        let (s, head, b) = raw(addr, m, p, &host, b"").await;
        assert_eq!(s, 401, "{m} {p} without a token: {b}");
        if p != "/" {
            assert_json_error(s, &b, 401, "unauthorized");
            assert!(
                head.to_ascii_lowercase()
                    .contains("www-authenticate: bearer"),
                "{head}"
            );
        }
        let wrong = format!("{host}Authorization: Bearer wrong-token-0123456789\r\n");
        let (s, _, b) = raw(addr, m, p, &wrong, b"").await;
        assert_json_error(s, &b, 401, "unauthorized");
    }
    let (s, _, _) = raw(addr, "GET", "/health", &host, b"").await;
    assert_eq!(s, 200, "/health is open");
    let (s, _, _) = raw(addr, "GET", "/v1/status", &bearer, b"").await;
    assert_eq!(s, 200);
    let alt = format!("{host}X-Roster-Token: {TOKEN}\r\n");
    let (s, _, _) = raw(addr, "GET", "/v1/status", &alt, b"").await;
    assert_eq!(s, 200);

    // DNS rebinding: a name that is not this server's, token or not.
    for h in ["evil.example", "evil.example:80", "127.0.0.1.evil.example"] {
        let hdr = format!("Host: {h}\r\nAuthorization: Bearer {TOKEN}\r\n");
        let (s, _, b) = raw(addr, "GET", "/v1/status", &hdr, b"").await;
        assert_json_error(s, &b, 403, "host_not_allowed");
    }
    for h in [
        format!("localhost:{}", addr.port()),
        format!("roster.example:{}", addr.port()),
    ] {
        let hdr = format!("Host: {h}\r\nAuthorization: Bearer {TOKEN}\r\n");
        let (s, _, b) = raw(addr, "GET", "/v1/status", &hdr, b"").await;
        assert_eq!(s, 200, "{h}: {b}");
    }

    // A change from another origin, even with the token.
    let foreign = format!("{bearer}Origin: http://evil.example\r\n");
    for (m, p) in [
        ("POST", "/v1/chaos"),
        ("PUT", "/v1/state/k"),
        ("PUT", "/v1/meta/k"),
        ("POST", "/v1/leave"),
    ] {
        let (s, _, b) = raw(addr, m, p, &foreign, b"{}").await;
        assert_json_error(s, &b, 403, "cross_origin");
    }
    let site = format!("{bearer}Sec-Fetch-Site: cross-site\r\n");
    let (s, _, b) = raw(addr, "PUT", "/v1/state/k", &site, b"v").await;
    assert_json_error(s, &b, 403, "cross_origin");
    let own = format!("{bearer}Origin: http://{addr}\r\n");
    let (s, _, b) = raw(addr, "PUT", "/v1/state/k", &own, b"v").await;
    assert_eq!(s, 200, "same origin: {b}");

    // The dashboard URL: the token becomes a cookie, the browser is sent on
    // without it in the URL.
    let (s, head, _) = raw(addr, "GET", "/?token=nope-nope-nope-nope", &host, b"").await;
    assert_eq!(s, 401);
    assert!(!head.to_ascii_lowercase().contains("set-cookie"));
    let (s, head, _) = raw(addr, "GET", &format!("/?token={TOKEN}"), &host, b"").await;
    assert_eq!(s, 303, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("location: /\r\n"), "{head}");
    let cookie_line = lower
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .expect("a cookie")
        .to_owned();
    assert!(
        cookie_line.contains("httponly") && cookie_line.contains("samesite=strict"),
        "{cookie_line}"
    );
    let cookie = format!("{host}Cookie: roster_token_{}={TOKEN}\r\n", addr.port());
    let (s, _, b) = raw(addr, "GET", "/", &cookie, b"").await;
    assert!(s == 200 && b.contains("<title>roster</title>"), "{s}");
    let (s, _, _) = raw(addr, "GET", "/v1/members", &cookie, b"").await;
    assert_eq!(s, 200);
    // A cookie alone never changes anything: a cross-origin form or no-cors
    // fetch would carry it (were it not SameSite) but cannot add the header.
    let (s, _, b) = raw(addr, "PUT", "/v1/state/k", &cookie, b"v2").await;
    assert_json_error(s, &b, 403, "missing_request_header");
    let with_header = format!("{cookie}X-Roster-Request: 1\r\n");
    let (s, _, b) = raw(addr, "PUT", "/v1/state/k", &with_header, b"v2").await;
    assert_eq!(s, 200, "{b}");
    // Another port's cookie is not this server's.
    let other = format!("{host}Cookie: roster_token_1={TOKEN}\r\n");
    let (s, _, _) = raw(addr, "GET", "/v1/members", &other, b"").await;
    assert_eq!(s, 401);

    // The library refuses reserved keys too.
    assert!(matches!(
        roster.set_state("tag:owner", b"false").await,
        Err(roster::runtime::WriteError::State(
            roster::node::StateError::Reserved(_)
        ))
    ));
    server.stop().await;
    roster.leave().await;
}

/// Parses Prometheus/OpenMetrics text: `# TYPE` lines into (name, type), and
/// checks every sample line is `name[{labels}] number`.
/// `--http-open-reads`: reads answer without a credential, anything that
/// changes the cluster still needs one, and the Host check still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_reads_answer_reads_only() {
    let ca = ClusterCa::generate("test").unwrap();
    let roster = node_a(&ca).await;
    let server = roster::api::serve(
        roster.clone(),
        "127.0.0.1:0".parse().unwrap(),
        access().open_reads(true),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let host = format!("Host: {addr}\r\n");
    for p in [
        "/metrics",
        "/v1/status",
        "/v1/members",
        "/v1/state/k?node=a",
    ] {
        let (s, _, b) = raw(addr, "GET", p, &host, b"").await;
        assert!(s == 200 || s == 404, "GET {p} with open reads: {s} {b}");
    }
    for (m, p) in [
        ("PUT", "/v1/state/k"),
        ("DELETE", "/v1/state/k"),
        ("PUT", "/v1/meta/k"),
        ("POST", "/v1/chaos"),
        ("POST", "/v1/leave"),
        // The agent's log lines need a credential too.
        ("GET", "/v1/events/stream?logs=debug"),
        ("GET", "/v1/events/stream?x=1&logs"),
    ] {
        let (s, _, b) = raw(addr, m, p, &host, b"v").await;
        assert_json_error(s, &b, 401, "unauthorized");
    }
    let (s, _, b) = raw(addr, "GET", "/v1/members", "Host: evil.example\r\n", b"").await;
    assert_json_error(s, &b, 403, "host_not_allowed");
    let (s, _) = http(addr, "PUT", "/v1/state/k", b"v").await;
    assert_eq!(s, 200);
    // With a credential: this test process installed no log layer, so the
    // log lines are refused clearly; a bad level is a 400.
    let (s, b) = http(addr, "GET", "/v1/events/stream?logs=info", b"").await;
    assert_json_error(s, &b, 501, "no_log_stream");
    let (s, b) = http(addr, "GET", "/v1/events/stream?logs=loud", b"").await;
    assert_json_error(s, &b, 400, "invalid_level");
    server.stop().await;
    roster.leave().await;
}

fn parse_metrics(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut types = std::collections::BTreeMap::new();
    let mut saw_eof = false;
    for line in text.lines() {
        if line == "# EOF" {
            saw_eof = true;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE line has a type");
            types.insert(name.to_owned(), ty.to_owned());
        } else if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample: {line}"));
            assert!(value.parse::<f64>().is_ok(), "bad value in: {line}");
            let name = series.split('{').next().unwrap();
            assert!(
                types.keys().any(|t| name.starts_with(t.as_str())),
                "sample {name} has no TYPE"
            );
            if let Some(labels) = series.split_once('{').map(|(_, l)| l) {
                assert!(labels.ends_with('}'), "bad labels in: {line}");
            }
        }
    }
    assert!(saw_eof, "no # EOF");
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_hold_the_documented_names_and_types() {
    let ca = ClusterCa::generate("test").unwrap();
    let a = node_a(&ca).await;
    let b = Roster::builder()
        .tls(ca.issue(&NodeId::new("b").unwrap()).unwrap())
        .bind("127.0.0.1:0".parse().unwrap())
        .join(a.local_addr())
        .config(Config::local())
        .start()
        .await
        .unwrap();
    let server = roster::api::serve(a.clone(), "127.0.0.1:0".parse().unwrap(), access())
        .await
        .unwrap();
    let addr = server.local_addr();
    // Wait (bounded) until probes have flowed.
    let mut text = String::new();
    for _ in 0..100 {
        let (s, body) = http(addr, "GET", "/metrics", b"").await;
        assert_eq!(s, 200);
        text = body;
        if text.contains("roster_probes_sent_total ")
            && !text.contains("roster_probes_sent_total 0")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let types = parse_metrics(&text);
    let expect = [
        ("roster_members", "gauge"),
        ("roster_bytes", "counter"),
        ("roster_messages", "counter"),
        ("roster_probes_sent", "counter"),
        ("roster_probe_failures", "counter"),
        ("roster_suspicions_raised", "counter"),
        ("roster_suspicions_refuted", "counter"),
        ("roster_downs_declared", "counter"),
        ("roster_forced_rejoins", "counter"),
        ("roster_datagrams_too_large", "counter"),
        ("roster_hlc_drift_rejections", "counter"),
        ("roster_tls_refusals", "counter"),
        ("roster_open_connections", "gauge"),
        ("roster_connections_opened", "counter"),
        ("roster_connections_accepted", "counter"),
        ("roster_raft_term", "gauge"),
        ("roster_raft_role", "gauge"),
        ("roster_raft_commit_index", "gauge"),
        ("roster_raft_quorum", "gauge"),
        ("roster_raft_leader_changes", "counter"),
    ];
    for (name, ty) in expect {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some(ty),
            "{name} in\n{text}"
        );
    }
    assert!(
        text.contains(r#"roster_members{state="alive"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"roster_bytes_total{kind="swim",direction="tx"}"#),
        "{text}"
    );
    assert!(!text.contains("roster_probes_sent_total 0"), "{text}");
    // The two nodes talk over a connection this one opened or accepted.
    let count = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        count("roster_connections_opened_total") + count("roster_connections_accepted_total") >= 1,
        "{text}"
    );
    server.stop().await;
    b.leave().await;
    a.leave().await;
}

/// The soft limit on open files of this process (Linux), if known.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// 5,000 connections that never finish their headers do not keep a normal
/// request from being answered, and a connection that sends nothing is
/// closed after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_starve_the_api() {
    const SLOW: usize = 5000;
    // Both ends of every connection live in this process.
    if open_file_limit().is_none_or(|l| l < 2 * SLOW as u64 + 1000) {
        eprintln!(
            "\n*** SKIPPED slow_clients_do_not_starve_the_api: the open-file limit ({:?}) is below {} (raise it with ulimit -n) ***\n",
            open_file_limit(),
            2 * SLOW + 1000
        );
        return;
    }
    let ca = ClusterCa::generate("test").unwrap();
    let roster = node_a(&ca).await;
    let server = roster::api::serve(roster.clone(), "127.0.0.1:0".parse().unwrap(), access())
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut held = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: ")
            .await
            .unwrap();
        held.push(s);
    }
    let start = tokio::time::Instant::now();
    let (s, b) = tokio::time::timeout(
        Duration::from_secs(10),
        http(addr, "GET", "/v1/status", b""),
    )
    .await
    .expect("answered while 5,000 slow connections are open");
    let took = start.elapsed();
    assert_eq!(s, 200, "{b}");
    println!("a normal request was answered in {took:?} beside {SLOW} slow connections");
    // A slow connection is closed once the header timeout passes.
    let mut buf = [0u8; 256];
    let limit = roster::api::HEADER_READ_TIMEOUT + Duration::from_secs(10);
    let n = tokio::time::timeout(limit, held[0].read(&mut buf))
        .await
        .expect("the server closes a connection that never finishes its headers");
    // Closed (0 bytes) or answered with a 408 and then closed.
    let n = n.unwrap_or(0);
    assert!(
        n == 0 || buf[..n].starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    drop(held);
    server.stop().await;
    roster.leave().await;
}

/// Quotas: one client filling its prefix gets 507 `quota_exceeded`, and
/// another client's writes under its own prefix still succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_filling_its_prefix_does_not_block_another() {
    let ca = ClusterCa::generate("test").unwrap();
    let roster = Arc::new(
        Roster::builder()
            .tls(ca.issue(&NodeId::new("a").unwrap()).unwrap())
            .bind("127.0.0.1:0".parse().unwrap())
            .config(Config::local())
            .bootstrap_expect(1)
            .start()
            .await
            .unwrap(),
    );
    let server = roster::api::serve(roster.clone(), "127.0.0.1:0".parse().unwrap(), access())
        .await
        .unwrap();
    let addr = server.local_addr();
    // The lone voter forms the metadata cluster.
    let mut formed = false;
    for _ in 0..100 {
        if http(addr, "PUT", "/v1/meta/app2/first", b"1").await.0 == 200 {
            formed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(formed, "no metadata cluster within 10 s");

    // The first client writes 64 KiB values under app1/ until refused.
    let value = vec![b'x'; 64 * 1024];
    let mut accepted = 0;
    let mut refusal = None;
    for i in 0..70 {
        let (s, b) = http(addr, "PUT", &format!("/v1/meta/app1/k{i:02}"), &value).await;
        if s == 200 {
            accepted += 1;
        } else {
            refusal = Some((s, b));
            break;
        }
    }
    let (s, b) = refusal.expect("the quota stops the first client");
    assert_json_error(s, &b, 507, "quota_exceeded");
    assert!(b.contains("app1/"), "{b}");
    // 1 MiB per prefix: 15 values of 64 KiB and their keys fit, not 16.
    assert_eq!(accepted, 15);
    // Another client, under its own prefix, is not blocked.
    let (s, b) = http(addr, "PUT", "/v1/meta/app2/config", &value).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(addr, "GET", "/v1/meta/app2/first", b"").await;
    assert_eq!(s, 200, "{b}");
    // The first client can still overwrite and delete its own keys.
    let (s, b) = http(addr, "PUT", "/v1/meta/app1/k00", b"small").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = http(addr, "DELETE", "/v1/meta/app1/k01", b"").await;
    assert_eq!(s, 200, "{b}");
    server.stop().await;
    roster.leave().await;
}
