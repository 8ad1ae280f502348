//! `roster cert ca|node|client|revoke|reinstate|revoked`.

use std::process::ExitCode;

use super::CertCmd;
use roster::node::NodeId;
use roster::runtime::tls::ClusterCa;

/// Loads the CA in `ca`, issues a certificate for `name` with `issue`, and
/// writes it into `out`; the name it was issued for.
fn issue_into(
    name: &str,
    ca: &std::path::Path,
    out: &std::path::Path,
    issue: impl FnOnce(
        &ClusterCa,
        &NodeId,
    ) -> Result<roster::runtime::tls::NodeCert, roster::runtime::tls::TlsError>,
) -> Result<NodeId, String> {
    let id = NodeId::new(name).map_err(|e| e.to_string())?;
    let ca = ClusterCa::load(ca).map_err(|e| e.to_string())?;
    let cert = issue(&ca, &id).map_err(|e| e.to_string())?;
    cert.save(out).map_err(|e| e.to_string())?;
    Ok(id)
}

/// Runs a `cert` subcommand.
pub fn run(cmd: CertCmd) -> ExitCode {
    let result = match cmd {
        CertCmd::Ca { dir, name, days } => ClusterCa::generate_for_days(&name, days)
            .and_then(|ca| ca.save(&dir))
            .map(|()| {
                format!(
                    "cluster CA written to {} (valid for {days} days)",
                    dir.display()
                )
            })
            .map_err(|e| e.to_string()),
        CertCmd::Node {
            name,
            ca,
            out,
            names,
            days,
        } => issue_into(&name, &ca, &out, |ca, id| {
            ca.issue_with_names(id, days, &names)
        })
        .map(|id| {
            format!(
                "certificate for {id} written to {} (valid for {days} days)",
                out.display()
            )
        }),
        CertCmd::Client {
            name,
            ca,
            out,
            days,
        } => issue_into(&name, &ca, &out, |ca, id| ca.issue_client(id, days)).map(|id| {
            format!(
                "operator certificate for {id} written to {} (valid for {days} days); use it with --cert-dir {} against an agent started with --http-tls",
                out.display(),
                out.display()
            )
        }),
        CertCmd::Revoke { name, client } => return super::client::revoke(&client, &name, true),
        CertCmd::Reinstate { name, client } => {
            return super::client::revoke(&client, &name, false);
        }
        CertCmd::Revoked(client) => return super::client::revoked(&client),
    };
    match result {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
