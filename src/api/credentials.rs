//! Where the operator token lives, so that the CLI finds it by itself.
//!
//! An agent serving the HTTP API records its token in the user's runtime
//! directory, one file per API address (as Jupyter records its servers):
//! `$ROSTER_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/roster`, else
//! `$HOME/.roster/run`; the directory is 0700 and each file 0600, and the
//! agent removes its file when it stops. A client command then takes, in
//! order: `--token-file` (`ROSTER_HTTP_TOKEN_FILE`), `ROSTER_HTTP_TOKEN`,
//! and that directory's file for the address it talks to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::api::{Token, TokenError};

/// The runtime directory, if the environment names one.
pub fn runtime_dir() -> Option<PathBuf> {
    let var = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("ROSTER_RUNTIME_DIR")
        .or_else(|| var("XDG_RUNTIME_DIR").map(|d| d.join("roster")))
        .or_else(|| var("HOME").map(|h| h.join(".roster").join("run")))
}

/// The file that records the token of the API at `addr`.
fn entry(dir: &Path, addr: SocketAddr) -> PathBuf {
    let ip = addr.ip().to_string().replace(':', "_");
    dir.join(format!("http-{ip}-{}.token", addr.port()))
}

/// Records `token` for the API at `addr`; returns the file written.
pub fn register(addr: SocketAddr, token: &Token) -> Result<PathBuf, TokenError> {
    let dir = runtime_dir().ok_or_else(|| TokenError::Io {
        path: "the runtime directory".into(),
        source: std::io::Error::other("none of ROSTER_RUNTIME_DIR, XDG_RUNTIME_DIR, HOME is set"),
    })?;
    register_in(&dir, addr, token)
}

fn register_in(dir: &Path, addr: SocketAddr, token: &Token) -> Result<PathBuf, TokenError> {
    let dir = dir.to_owned();
    let io = |source| TokenError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    let path = entry(&dir, addr);
    // Written aside, then renamed: a client never reads half a token.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    token.write_private(&tmp, true)?;
    std::fs::rename(&tmp, &path).map_err(|source| TokenError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path)
}

/// The token a client command talking to `http` uses: `file` if given,
/// else `ROSTER_HTTP_TOKEN`, else what the agent at that address recorded.
/// `Ok(None)` when there is none.
pub fn find(http: &str, file: Option<&Path>) -> Result<Option<Token>, String> {
    if let Some(f) = file {
        return Token::load(f).map(Some).map_err(|e| e.to_string());
    }
    if let Some(t) = std::env::var("ROSTER_HTTP_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Token::parse(&t, "ROSTER_HTTP_TOKEN")
            .map(Some)
            .map_err(|e| e.to_string());
    }
    match runtime_dir() {
        Some(dir) => lookup_in(&dir, http),
        None => Ok(None),
    }
}

/// What an agent recorded in the runtime directory `dir` for the API at
/// `http`.
pub fn lookup_in(dir: &Path, http: &str) -> Result<Option<Token>, String> {
    let addrs: Vec<SocketAddr> = match http.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(http)
            .map(|i| i.collect())
            .unwrap_or_default(),
    };
    for a in addrs {
        // The agent's own address, then an agent listening on every
        // address of the machine with that port.
        let any4 = SocketAddr::from(([0, 0, 0, 0], a.port()));
        let any6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, a.port()));
        for cand in [a, any4, any6] {
            let p = entry(dir, cand);
            if p.exists() {
                return Token::load(&p).map(Some).map_err(|e| e.to_string());
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_records_its_token_and_a_client_finds_it_by_address() {
        let dir = std::env::temp_dir().join(format!("roster-cred-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let t = Token::generate().unwrap();
        let a: SocketAddr = "127.0.0.1:8946".parse().unwrap();
        let p = register_in(&dir, a, &t).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&p), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        assert_eq!(lookup_in(&dir, "127.0.0.1:8946").unwrap(), Some(t.clone()));
        assert_eq!(lookup_in(&dir, "localhost:8946").unwrap(), Some(t.clone()));
        assert_eq!(lookup_in(&dir, "127.0.0.1:8947").unwrap(), None);
        // An agent on every address answers for any of the machine's.
        let u = Token::generate().unwrap();
        register_in(&dir, "0.0.0.0:9000".parse().unwrap(), &u).unwrap();
        assert_eq!(lookup_in(&dir, "127.0.0.1:9000").unwrap(), Some(u));
        // A newer agent on the same address replaces the record.
        let v = Token::generate().unwrap();
        register_in(&dir, a, &v).unwrap();
        assert_eq!(lookup_in(&dir, "127.0.0.1:8946").unwrap(), Some(v));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
