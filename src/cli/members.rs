//! `roster members`: the members an agent sees, filtered by state, name or
//! tag, in a table or as JSON.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::client::{ClientArgs, api_error, request, run_result, table};

/// `roster members` options.
#[derive(Debug, Clone, Args)]
pub struct MembersArgs {
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only members in this state (alive, suspect, down, left).
    #[arg(long)]
    pub status: Option<String>,
    /// Only members with this tag, `KEY=VALUE` (a value is a regular
    /// expression matched against the whole value); repeatable, all must
    /// match.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only members whose name matches this regular expression (whole name).
    #[arg(long)]
    pub name: Option<String>,
    /// Also show each member's incarnation, wire protocol version, release
    /// and the round-trip time of this agent's connection to it.
    #[arg(long)]
    pub detailed: bool,
}

/// A whole-string regular expression.
fn anchored(re: &str, what: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("{what} {re:?}: {e}"))
}

/// Which members `roster members` shows.
struct MemberFilter {
    status: Option<String>,
    tags: Vec<(String, regex::Regex)>,
    name: Option<regex::Regex>,
}

impl MemberFilter {
    fn new(a: &MembersArgs) -> Result<Self, String> {
        let status = a.status.as_ref().map(|s| s.to_ascii_lowercase());
        if let Some(s) = &status
            && !["alive", "suspect", "down", "left"].contains(&s.as_str())
        {
            return Err(format!("--status {s:?}: one of alive, suspect, down, left"));
        }
        let tags = a
            .tags
            .iter()
            .map(|t| {
                let (k, v) = t
                    .split_once('=')
                    .ok_or_else(|| format!("--tag {t:?}: expected KEY=VALUE"))?;
                Ok((k.to_owned(), anchored(v, "--tag")?))
            })
            .collect::<Result<_, String>>()?;
        let name = a
            .name
            .as_deref()
            .map(|n| anchored(n, "--name"))
            .transpose()?;
        Ok(Self { status, tags, name })
    }

    fn keeps(&self, m: &Value) -> bool {
        let state = m["state"].as_str().unwrap_or("");
        if self.status.as_deref().is_some_and(|s| s != state) {
            return false;
        }
        if let Some(re) = &self.name
            && !re.is_match(m["id"].as_str().unwrap_or(""))
        {
            return false;
        }
        self.tags.iter().all(|(k, re)| {
            m["tags"][k.as_str()]
                .as_str()
                .is_some_and(|v| re.is_match(v))
        })
    }
}

/// `roster members`.
pub fn members(a: &MembersArgs) -> ExitCode {
    let c = &a.client;
    run_result(|| {
        let filter = MemberFilter::new(a)?;
        let (status, v) = request(&c.agent()?, "GET", "/v1/members", b"")?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        let kept: Vec<&Value> = v
            .as_array()
            .ok_or("agent sent a non-list member list")?
            .iter()
            .filter(|m| filter.keeps(m))
            .collect();
        if c.json {
            println!("{}", Value::Array(kept.into_iter().cloned().collect()));
            return Ok(());
        }
        let detailed = a.detailed;
        let rows: Vec<Vec<String>> = kept
            .into_iter()
            .map(|m| {
                let tags = m["tags"]
                    .as_object()
                    .map(|t| {
                        t.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                let mut row = vec![
                    m["id"].as_str().unwrap_or("").to_owned(),
                    m["addr"].as_str().unwrap_or("").to_owned(),
                    m["state"].as_str().unwrap_or("").to_owned(),
                    m["generation"].to_string(),
                ];
                if detailed {
                    let (release, protocol) = m["build"]
                        .as_str()
                        .and_then(|b| b.split_once('/'))
                        .unwrap_or(("-", "-"));
                    row.extend([
                        m["incarnation"].to_string(),
                        protocol.to_owned(),
                        release.to_owned(),
                        m["rtt_ms"]
                            .as_f64()
                            .map_or("-".to_owned(), |ms| format!("{ms:.1} ms")),
                        m["estimated_rtt_ms"]
                            .as_f64()
                            .map_or("-".to_owned(), |ms| format!("{ms:.1} ms")),
                    ]);
                }
                row.push(tags);
                row
            })
            .collect();
        let head: &[&str] = if detailed {
            &[
                "Name",
                "Address",
                "State",
                "Generation",
                "Incarnation",
                "Protocol",
                "Version",
                "RTT",
                "Estimate",
                "Tags",
            ]
        } else {
            &["Name", "Address", "State", "Generation", "Tags"]
        };
        print!("{}", table(head, &rows));
        Ok(())
    })
}
