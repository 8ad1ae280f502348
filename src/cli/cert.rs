//! `roster cert ca|node|client|revoke|reinstate|revoked`.

use std::process::ExitCode;

use super::CertCmd;
use crate::node::NodeId;
use crate::runtime::tls::ClusterCa;

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
        } => NodeId::new(name).map_err(|e| e.to_string()).and_then(|id| {
            let ca = ClusterCa::load(&ca).map_err(|e| e.to_string())?;
            let cert = ca
                .issue_with_names(&id, days, &names)
                .map_err(|e| e.to_string())?;
            cert.save(&out).map_err(|e| e.to_string())?;
            Ok(format!(
                "certificate for {id} written to {} (valid for {days} days)",
                out.display()
            ))
        }),
        CertCmd::Client {
            name,
            ca,
            out,
            days,
        } => NodeId::new(name).map_err(|e| e.to_string()).and_then(|id| {
            let ca = ClusterCa::load(&ca).map_err(|e| e.to_string())?;
            let cert = ca.issue_client(&id, days).map_err(|e| e.to_string())?;
            cert.save(&out).map_err(|e| e.to_string())?;
            Ok(format!(
                "operator certificate for {id} written to {} (valid for {days} days); use it with --cert-dir {} against an agent started with --http-tls",
                out.display(),
                out.display()
            ))
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
