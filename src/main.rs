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
            let cfg = match Config::load_and_validate(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("portcullis: invalid config {}:\n{e}", config.display());
                    return ExitCode::from(1);
                }
            };
            portcullis::telemetry::init(&cfg.log);
            if let Err(e) = portcullis::gateway::run(cfg) {
                tracing::error!(error = %e, "portcullis could not start");
                eprintln!("portcullis: {e}");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Command::Check { config } => match Config::load_and_validate(&config) {
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
            let cfg = match Config::load_and_validate(&config) {
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
