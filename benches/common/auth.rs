//! Signing in, for the benches that talk to a server process: since access
//! control (#14) every request but `/healthz` needs a token. Each bench
//! makes one admin token in its store with the CLI (as an administrator
//! would), before any server starts, and every client sends it.

use std::sync::OnceLock;

/// The bench's admin token, once made.
pub static TOKEN: OnceLock<String> = OnceLock::new();

/// Makes an admin token with `onemap token create STORE_ARGS…`
/// (`--store PATH` or `--database URL`) and keeps it for [`headers`].
pub fn make_token(bin: &str, store_args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(bin)
        .args(["token", "create", "--role", "admin", "--name", "bench"])
        .args(store_args)
        .stderr(std::process::Stdio::null())
        .output()?;
    anyhow::ensure!(out.status.success(), "onemap token create failed");
    let token = String::from_utf8(out.stdout)?
        .lines()
        .last()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .ok_or_else(|| anyhow::anyhow!("onemap token create printed no token"))?;
    let _ = TOKEN.set(token.clone());
    Ok(token)
}

/// `Authorization: Bearer TOKEN` (empty before [`make_token`]).
pub fn headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    if let Some(t) = TOKEN.get()
        && let Ok(v) = format!("Bearer {t}").parse()
    {
        h.insert(reqwest::header::AUTHORIZATION, v);
    }
    h
}

/// The same header as a raw HTTP/1.1 line, with its CRLF.
#[allow(dead_code)]
pub fn line() -> String {
    TOKEN
        .get()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default()
}
