//! The `portcullis` command line: run the gateway, check a config, make keys
//! and tokens. Each subcommand is a thin shell around library functions.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::config::{Config, JwtAlgorithm, CONFIG_ENV};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Identity gateway sidecar: SAML SSO, SCIM, signed identity headers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway.
    Run {
        /// Config file.
        #[arg(short, long, env = CONFIG_ENV)]
        config: PathBuf,
    },
    /// Make a running gateway re-read its config file (as SIGHUP does),
    /// through its admin listener: exit 0 when the new config serves, 1 when
    /// it was refused (every problem listed; the previous config keeps
    /// serving), 2 when the gateway could not be asked.
    Reload {
        #[arg(short, long, env = CONFIG_ENV)]
        config: PathBuf,
        /// Admin API token (as printed by `portcullis admin-token create`).
        #[arg(long, env = "PORTCULLIS_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        /// The admin listener, when the config file cannot say (default:
        /// `[admin] listen` of the file, else 127.0.0.1:9090).
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
    },
    /// Validate a config file: exit 0 with a summary, or 1 listing every problem.
    Check {
        #[arg(short, long, env = CONFIG_ENV)]
        config: PathBuf,
    },
    /// Signing keys for the identity JWT.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the SAML SP metadata XML (for the IdP's SAML app settings).
    Metadata {
        #[arg(short, long, env = CONFIG_ENV)]
        config: PathBuf,
    },
    /// Show the provisioning log (recent SCIM requests) of a running gateway,
    /// read from its admin listener.
    ScimLog {
        #[arg(short, long, env = CONFIG_ENV)]
        config: PathBuf,
        /// How many entries, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only this SCIM client's requests.
        #[arg(long)]
        client: Option<String>,
        /// Admin API token (as printed by `portcullis admin-token create`).
        #[arg(long, env = "PORTCULLIS_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Provisioning webhooks of a running gateway (through its admin
    /// listener): queue status, dead letters, replay, backfill; and secrets.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// SCIM client bearer tokens.
    ScimToken {
        #[command(subcommand)]
        command: ScimTokenCommand,
    },
    /// Admin API bearer tokens.
    AdminToken {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a new private key (PKCS#8 PEM) on stdout or into a file.
    Generate {
        /// ES256 (default), RS256 or EdDSA.
        #[arg(long, default_value = "ES256", value_parser = parse_alg)]
        alg: JwtAlgorithm,
        /// Write to this file (mode 0600, never overwritten) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Where the admin API is and how to authenticate to it.
#[derive(clap::Args)]
struct AdminArgs {
    #[arg(short, long, env = CONFIG_ENV)]
    config: PathBuf,
    /// Admin API token (as printed by `portcullis admin-token create`).
    #[arg(long, env = "PORTCULLIS_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Queue depth, oldest pending age, failures and dead letters per target.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Events given up after `max_age`, oldest first.
    DeadLetters {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Re-queue dead letters (all, or those matching --id / --since).
    Replay {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this target (default: every target).
        #[arg(long)]
        target: Option<String>,
        /// Only this event id (repeatable).
        #[arg(long = "id")]
        ids: Vec<String>,
        /// Only events that happened at or after this time: RFC 3339
        /// (`2026-11-23T08:00:00Z`) or an age (`2h` = two hours ago).
        #[arg(long, value_parser = parse_since)]
        since: Option<u64>,
    },
    /// Drop dead letters for good: those named by --id, those that happened
    /// before --before, or --all.
    Discard {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this target (default: every target).
        #[arg(long)]
        target: Option<String>,
        /// This event id (repeatable).
        #[arg(long = "id")]
        ids: Vec<String>,
        /// Events that happened before this time: RFC 3339 or an age (`7d`).
        #[arg(long, value_parser = parse_since)]
        before: Option<u64>,
        /// Every dead letter (of --target, or of every target).
        #[arg(long, conflicts_with_all = ["ids", "before"])]
        all: bool,
    },
    /// Queue the current directory as `*.created` events for one target (an
    /// app added later catches up).
    Backfill {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        target: String,
    },
    /// Print a new random `whsec_` signing secret.
    Secret,
}

/// `--since`: RFC 3339, or a duration meaning "that long ago"; in ms.
fn parse_since(s: &str) -> Result<u64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return u64::try_from(t.timestamp_millis()).map_err(|_| "time before 1970".to_string());
    }
    let d = humantime::parse_duration(s)
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a duration like \"2h\""))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(now.saturating_sub(d).as_millis() as u64)
}

#[derive(Subcommand)]
enum ScimTokenCommand {
    /// Print a new token once, and the `token_hash` line for `[[scim.client]]`.
    Create {
        /// The `[[scim.client]] name` the token is for.
        #[arg(long)]
        client: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new token once, and the hash line for the config.
    Create,
}

fn parse_alg(s: &str) -> Result<JwtAlgorithm, String> {
    match s.to_ascii_uppercase().as_str() {
        "ES256" => Ok(JwtAlgorithm::ES256),
        "RS256" => Ok(JwtAlgorithm::RS256),
        "EDDSA" | "ED25519" => Ok(JwtAlgorithm::EdDSA),
        _ => Err(format!(
            "unknown algorithm {s:?}: use ES256, RS256 or EdDSA"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let cfg = match portcullis::validate::load_and_validate(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("portcullis: invalid config {}:\n{e}", config.display());
                    return ExitCode::from(1);
                }
            };
            portcullis::telemetry::init(&cfg.log);
            if let Err(e) = portcullis::gateway::run(cfg, Some(config)) {
                tracing::error!(error = %e, "portcullis could not start");
                eprintln!("portcullis: {e}");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Command::Reload {
            config,
            token,
            admin,
        } => reload(&config, &token, admin),
        Command::Check { config } => match portcullis::validate::load_and_validate(&config) {
            Ok(cfg) => {
                println!("{}: ok", config.display());
                print!("{}", cfg.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {} problem(s)", config.display(), e.0.len());
                eprint!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Metadata { config } => {
            let cfg = match portcullis::validate::load_and_validate(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("portcullis: invalid config {}:\n{e}", config.display());
                    return ExitCode::from(1);
                }
            };
            let Some(saml) = &cfg.saml else {
                eprintln!("portcullis: {} has no [saml] section", config.display());
                return ExitCode::from(1);
            };
            let remote = if portcullis::saml::remote::any_remote(saml) {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        Some(rt.block_on(portcullis::saml::remote::fetch_all(&cfg, saml, None)))
                    }
                    Err(e) => {
                        eprintln!("portcullis: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                None
            };
            let remote = remote.unwrap_or_default();
            match portcullis::saml::idp::Registry::build(&cfg, saml, Some(&remote)) {
                Ok(reg) => {
                    print!("{}", portcullis::saml::metadata::sp_metadata(&reg.sp));
                    ExitCode::SUCCESS
                }
                Err((key, msg)) => {
                    eprintln!("{key}: {msg}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Keys {
            command: KeysCommand::Generate { alg, out },
        } => match out {
            Some(path) => match portcullis::identity::keys::generate_to_file(alg, &path) {
                Ok(()) => {
                    eprintln!("wrote {alg} key to {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    ExitCode::from(1)
                }
            },
            None => match portcullis::identity::keys::generate_pem(alg) {
                Ok(pem) => {
                    print!("{pem}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    ExitCode::from(1)
                }
            },
        },
        Command::ScimLog {
            config,
            limit,
            client,
            token,
            json,
        } => match scim_log(&config, limit, client, &token, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("portcullis: {e}");
                ExitCode::from(1)
            }
        },
        Command::Webhooks { command } => match webhooks(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("portcullis: {e}");
                ExitCode::from(1)
            }
        },
        Command::ScimToken {
            command: ScimTokenCommand::Create { client },
        } => {
            let token = portcullis::secret::new_token("scim_");
            let hash = portcullis::secret::TokenHash::of(&token);
            println!("SCIM bearer token for client {client:?} (shown once; paste it into the IdP, e.g. JumpCloud's Token Key):\n  {token}");
            println!("config for [[scim.client]] name = {client:?}:\n  token_hash = \"{hash}\"");
            ExitCode::SUCCESS
        }
        Command::AdminToken {
            command: TokenCommand::Create,
        } => {
            let token = portcullis::secret::new_token("padm_");
            let hash = portcullis::secret::TokenHash::of(&token);
            println!("token (shown once, store it in your secret manager):\n  {token}");
            println!("config line for [admin]:\n  token_hash = \"{hash}\"");
            ExitCode::SUCCESS
        }
    }
}

/// `portcullis reload`. The file may be the broken one being refused, so
/// the admin address is read leniently: `--admin`, else `admin.listen` of
/// whatever of the file parses (and the environment), else the default.
fn reload(config: &std::path::Path, token: &str, admin: Option<std::net::SocketAddr>) -> ExitCode {
    let mut addr = admin
        .or_else(|| portcullis::config::admin_listen_leniently(config))
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 9090)));
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    let asked = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                let resp = reqwest::Client::new()
                    .post(format!("http://{addr}/admin/reload"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| format!("cannot reach the admin listener at {addr}: {e}"))?;
                let status = resp.status();
                let text = resp.text().await.map_err(|e| e.to_string())?;
                Ok((status, text))
            })
        });
    let (status, text) = match asked {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(2);
        }
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    match status.as_u16() {
        200 => {
            let changed: Vec<&str> = v["changed"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            println!(
                "reloaded: generation {}, changed: {}",
                v["generation"],
                if changed.is_empty() {
                    "nothing in the file (key files re-read)".to_string()
                } else {
                    changed.join(", ")
                }
            );
            ExitCode::SUCCESS
        }
        422 => {
            eprintln!(
                "refused ({}); the previous configuration keeps serving:",
                v["result"].as_str().unwrap_or("?")
            );
            for p in v["problems"].as_array().into_iter().flatten() {
                eprintln!(
                    "  {}: {}",
                    p["key"].as_str().unwrap_or("?"),
                    p["message"].as_str().unwrap_or("?")
                );
            }
            ExitCode::from(1)
        }
        _ => {
            eprintln!("portcullis: admin API answered {status}: {text}");
            ExitCode::from(2)
        }
    }
}

/// Calls the running gateway's admin API; returns the JSON answer.
fn admin_call(
    admin: &AdminArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, String> {
    let cfg = Config::load(&admin.config).map_err(|e| e.to_string())?;
    let mut addr = cfg.admin.listen.0;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    let url = format!("http://{addr}/admin/{path}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let text = rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method, &url)
            .bearer_auth(&admin.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach the admin listener at {addr}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("admin API answered {status}: {text}"))
        }
    })?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn webhooks(command: WebhooksCommand) -> Result<(), String> {
    match command {
        WebhooksCommand::Secret => {
            println!("{}", portcullis::webhook::signing::Secret::generate());
        }
        WebhooksCommand::Status { admin, json } => {
            let v = admin_call(&admin, reqwest::Method::GET, "webhooks", None)?;
            if json {
                println!("{v}");
                return Ok(());
            }
            println!(
                "{:<16} {:>8} {:>11} {:>9} {:>6} {:>10} {:>8}  last error",
                "target", "pending", "oldest(s)", "retrying", "dead", "delivered", "failed"
            );
            for t in v["targets"].as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:>8} {:>11} {:>9} {:>6} {:>10} {:>8}  {}",
                    t["target"].as_str().unwrap_or(""),
                    t["pending"],
                    t["oldest_pending_seconds"],
                    t["retrying"],
                    t["dead_letters"],
                    t["delivered"],
                    t["failed_attempts"],
                    t["last_error"].as_str().unwrap_or("-"),
                );
            }
        }
        WebhooksCommand::DeadLetters {
            admin,
            target,
            json,
        } => {
            let mut path = "webhooks/dead-letters".to_string();
            if let Some(t) = &target {
                path.push_str(&format!("?target={}", urlencode(t)));
            }
            let v = admin_call(&admin, reqwest::Method::GET, &path, None)?;
            for d in v["dead_letters"].as_array().into_iter().flatten() {
                if json {
                    println!("{d}");
                } else {
                    println!(
                        "{}  {}  {:<22} {:<10} attempts={} {}",
                        portcullis::directory::rfc3339(d["at_ms"].as_u64().unwrap_or(0)),
                        d["event_id"].as_str().unwrap_or(""),
                        d["type"].as_str().unwrap_or(""),
                        d["target"].as_str().unwrap_or(""),
                        d["attempts"],
                        d["error"].as_str().unwrap_or(""),
                    );
                }
            }
        }
        WebhooksCommand::Replay {
            admin,
            target,
            ids,
            since,
        } => {
            let body = serde_json::json!({"target": target, "ids": ids, "since_ms": since});
            let v = admin_call(&admin, reqwest::Method::POST, "webhooks/replay", Some(body))?;
            println!("re-queued {} dead letter(s)", v["replayed"]);
        }
        WebhooksCommand::Discard {
            admin,
            target,
            ids,
            before,
            all,
        } => {
            if ids.is_empty() && before.is_none() && !all {
                return Err("name what to discard: --id, --before or --all".into());
            }
            let body =
                serde_json::json!({"target": target, "ids": ids, "before_ms": before, "all": all});
            let v = admin_call(
                &admin,
                reqwest::Method::POST,
                "webhooks/discard",
                Some(body),
            )?;
            println!("discarded {} dead letter(s)", v["discarded"]);
        }
        WebhooksCommand::Backfill { admin, target } => {
            let body = serde_json::json!({ "target": target });
            let v = admin_call(
                &admin,
                reqwest::Method::POST,
                "webhooks/backfill",
                Some(body),
            )?;
            println!("queued {} event(s) for {target}", v["queued"]);
        }
    }
    Ok(())
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Reads the provisioning log through the running gateway's admin listener.
fn scim_log(
    config: &std::path::Path,
    limit: usize,
    client: Option<String>,
    token: &str,
    json: bool,
) -> Result<(), String> {
    let cfg = Config::load(config).map_err(|e| e.to_string())?;
    let mut addr = cfg.admin.listen.0;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    let mut url =
        url::Url::parse(&format!("http://{addr}/admin/scim-log")).map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("limit", &limit.to_string());
    if let Some(c) = &client {
        url.query_pairs_mut().append_pair("client", c);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let body = rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(url.as_str())
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("cannot reach the admin listener at {addr}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("admin API answered {status}: {text}"))
        }
    })?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    for e in v["entries"].as_array().into_iter().flatten() {
        if json {
            println!("{e}");
        } else if let Ok(entry) =
            serde_json::from_value::<portcullis::scim::log::LogEntry>(e.clone())
        {
            println!("{}", entry.line());
        }
    }
    Ok(())
}
