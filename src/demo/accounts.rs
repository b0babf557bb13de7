//! The demo's accounts: one per role, a street-scoped department account
//! among them, an operator token for `onemap replay` and a kiosk token for
//! a wall screen. Passwords and tokens are random, printed once and written
//! to a file next to the store that only its owner may read. Nothing here
//! is a default password: every demo store gets its own.

use crate::auth::{Principal, Role, accounts};
use crate::model::builtin;
use crate::store::Store;
use std::io::Write;
use std::path::Path;

/// One created credential.
#[derive(Clone, Debug)]
pub struct Credential {
    /// `user`, `token` or `kiosk`.
    pub kind: &'static str,
    pub name: String,
    pub role: Role,
    pub scope: Vec<String>,
    /// The password or the token.
    pub secret: String,
}

/// A random password of four groups of letters and digits (about 95 bits),
/// with a capital, a digit and a dash so it meets `check_password`.
fn password() -> String {
    let hex = accounts::new_secret("");
    let alphabet = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    let chars: Vec<char> = bytes
        .iter()
        .take(16)
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect();
    let groups: Vec<String> = chars.chunks(4).map(|c| c.iter().collect()).collect();
    format!("Om{}-{}", groups.join("-"), bytes[16] % 10)
}

/// Creates the demo's accounts in `store` (which holds the demo's grids).
pub async fn create(store: &dyn Store) -> anyhow::Result<Vec<Credential>> {
    let grids = store.load_layer(builtin::GRIDS).await?;
    let defs = store.layers().await?;
    let def = defs
        .iter()
        .find(|d| d.name == builtin::GRIDS)
        .ok_or_else(|| anyhow::anyhow!("the demo has no grids layer"))?;
    let code_i = def.prop_index("code");
    let level_i = def.prop_index("level");
    let mut street = None;
    for f in &grids {
        let get = |i: Option<usize>| {
            i.and_then(|i| f.properties.get(i))
                .and_then(|v| v.as_str().map(str::to_string))
        };
        if get(level_i).as_deref() == Some("street") {
            street = get(code_i);
            break;
        }
    }
    let street = street.ok_or_else(|| anyhow::anyhow!("the demo has no street grid"))?;
    let by = Principal::system("onemap demo");
    let mut out = Vec::new();
    let users = [
        ("admin", Role::Admin, vec![]),
        ("anquan", Role::Security, vec![]),
        ("shenji", Role::Auditor, vec![]),
        ("guihua", Role::Planner, vec![]),
        ("bumen", Role::Department, vec![]),
        ("jiedao", Role::Department, vec![street.clone()]),
        ("daping", Role::Viewer, vec![]),
    ];
    for (name, role, scope) in users {
        let pw = password();
        accounts::add_user(
            store,
            &by,
            "",
            accounts::NewUser {
                name: name.to_string(),
                role,
                scope: scope.clone(),
                password: pw.clone(),
            },
        )
        .await?;
        out.push(Credential {
            kind: "user",
            name: name.to_string(),
            role,
            scope,
            secret: pw,
        });
    }
    for (kind, name, role, kiosk) in [
        ("token", "replay", Role::Operator, false),
        ("kiosk", "screen", Role::Viewer, true),
    ] {
        let (_, secret) = accounts::create_token(
            store,
            &by,
            "",
            accounts::NewToken {
                name: name.to_string(),
                role,
                scope: vec![],
                expires_days: None,
                kiosk,
            },
        )
        .await?;
        out.push(Credential {
            kind,
            name: name.to_string(),
            role,
            scope: vec![],
            secret,
        });
    }
    Ok(out)
}

/// Writes the credentials to `path`, readable by its owner only (0600).
/// Lines: kind, name, role, scope (comma-separated, `-` for all), secret,
/// tab-separated.
pub fn write_file(path: &Path, creds: &[Credential]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // An existing file keeps its mode on open: set it.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(
        f,
        "# onemap demo accounts (this demo store only). kind\tname\trole\tscope\tsecret"
    )?;
    for c in creds {
        let scope = if c.scope.is_empty() {
            "-".to_string()
        } else {
            c.scope.join(",")
        };
        writeln!(
            f,
            "{}\t{}\t{}\t{}\t{}",
            c.kind, c.name, c.role, scope, c.secret
        )?;
    }
    Ok(())
}

/// The secret of `name` in a credentials file.
pub fn read_secret(path: &Path, name: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|f| f.len() == 5 && f[1] == name)
        .map(|f| f[4].to_string())
        .ok_or_else(|| anyhow::anyhow!("{} has no account {name:?}", path.display()))
}
