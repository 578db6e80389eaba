//! The `portcullis` command: serve, check a configuration, explain what
//! portcullis would do with given claims, or manage sessions.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::config::{Config, LogFormat};

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Single sign-on in front of self-hosted apps")]
struct Cli {
    /// The TOML configuration file.
    #[arg(long, short, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
    /// Show the identity, headers and decision for given claims, without
    /// anyone logging in. Exit code 0 allow, 1 deny, 2 bad input.
    Explain {
        /// A JSON file: the merged claims, or {"id_token": {..}, "userinfo": {..}, "access_token": ..}.
        #[arg(long)]
        claims: PathBuf,
        /// The URL of a request to decide policy for, e.g. https://photos.example.com/album/1.
        #[arg(long)]
        url: Option<String>,
        /// The request's method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List or end sessions in the configured (redis) store.
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
    },
    /// List or revoke personal access tokens in the configured (redis) store.
    Tokens {
        #[command(subcommand)]
        action: TokensAction,
    },
}

#[derive(Subcommand)]
enum SessionsAction {
    /// Show the sessions of a user (never their tokens).
    List(Who),
    /// End every session of a user, on every instance, and revoke their
    /// personal access tokens.
    Revoke {
        #[command(flatten)]
        who: Who,
        /// End the sessions only; keep the personal access tokens.
        #[arg(long)]
        sessions_only: bool,
    },
}

#[derive(Subcommand)]
enum TokensAction {
    /// Show the personal access tokens of a user (name, dates, hosts; never the token).
    List(Who),
    /// Revoke every personal access token of a user, on every instance.
    Revoke(Who),
}

/// What `sessions` and `tokens` do.
enum StoreAction {
    List { tokens: bool },
    Revoke(portcullis::session::Revoke),
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct Who {
    /// The mapped user name or the person's own user name.
    #[arg(long)]
    user: Option<String>,
    /// The identity provider's subject (`sub`).
    #[arg(long)]
    sub: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        // The rules are compiled as the service compiles them, so their
        // errors show here too.
        Command::CheckConfig => match Config::load(cli.config.as_deref()).and_then(portcullis::rules::Rules::new) {
            Ok(portcullis::rules::Rules { config, .. }) => {
                println!("{}", serde_json::to_string_pretty(&config.redacted()).expect("JSON"));
                for (what, uri) in config.provider_uris() {
                    eprintln!("info: register at the identity provider as the {what}: {uri}");
                }
                for warning in config.warnings() {
                    eprintln!("warning: {warning}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portcullis: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Explain { claims, url, method, json } => {
            portcullis::explain::run(cli.config.as_deref(), &claims, url.as_deref(), &method, json)
        }
        Command::Serve => serve(cli.config),
        Command::Sessions { action } => match action {
            SessionsAction::List(who) => sessions(cli.config, &who, StoreAction::List { tokens: false }),
            SessionsAction::Revoke { who, sessions_only } => {
                let what = if sessions_only { Revoke::Sessions } else { Revoke::All };
                sessions(cli.config, &who, StoreAction::Revoke(what))
            }
        },
        Command::Tokens { action } => match action {
            TokensAction::List(who) => sessions(cli.config, &who, StoreAction::List { tokens: true }),
            TokensAction::Revoke(who) => sessions(cli.config, &who, StoreAction::Revoke(Revoke::Tokens)),
        },
    }
}

use portcullis::session::Revoke;

/// `sessions` and `tokens`: both read the store's index of a person.
fn sessions(path: Option<PathBuf>, who: &Who, action: StoreAction) -> ExitCode {
    use portcullis::session::{Index, open_store, revoke};
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(2);
        }
    };
    if config.session.store != portcullis::config::StoreKind::Redis {
        eprintln!(
            "portcullis: the memory store lives inside the running portcullis process; \
             `portcullis sessions` and `portcullis tokens` need session.store = \"redis\""
        );
        return ExitCode::from(2);
    }
    let index = match (&who.user, &who.sub) {
        (Some(u), _) => Index::User(u.clone()),
        (None, Some(s)) => Index::Subject(s.clone()),
        (None, None) => unreachable!("clap requires one"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let store = match open_store(&config.session) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("portcullis: {e}");
                return ExitCode::FAILURE;
            }
        };
        match action {
            StoreAction::List { tokens } => match store.find(&index).await {
                Ok(found) => {
                    let found: Vec<_> = found.into_iter().filter(|(_, s)| s.is_token() == tokens).collect();
                    if tokens {
                        println!("{:<20} {:<20} {:<20} {:<16} {:<24} HOSTS", "CREATED", "LAST USED", "EXPIRES", "USER", "NAME");
                    } else {
                        println!("{:<20} {:<20} {:<20} {:<16} {:<16} SUBJECT", "CREATED", "LAST SEEN", "EXPIRES", "USER", "PERSON");
                    }
                    for (_, s) in &found {
                        let (created, seen) = (timestamp(s.created_at), timestamp(s.last_seen.max(s.created_at)));
                        match &s.token {
                            Some(t) => println!(
                                "{created:<20} {:<20} {:<20} {:<16} {:<24} {}",
                                if s.last_seen == 0 { "never".to_string() } else { seen },
                                if t.no_expiry { "never".to_string() } else { timestamp(s.expires_at) },
                                s.identity.user(),
                                t.name,
                                if t.hosts.is_empty() { "any".to_string() } else { t.hosts.join(",") }
                            ),
                            None => println!(
                                "{created:<20} {seen:<20} {:<20} {:<16} {:<16} {}",
                                timestamp(s.expires_at),
                                s.identity.user(),
                                s.identity.person(),
                                s.identity.subject()
                            ),
                        }
                    }
                    eprintln!("{} {}", found.len(), if tokens { "token(s)" } else { "session(s)" });
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    ExitCode::FAILURE
                }
            },
            StoreAction::Revoke(what) => match revoke(store.as_ref(), &index, what).await {
                Ok((sessions, tokens)) => {
                    match what {
                        Revoke::All => println!("{sessions} session(s) ended, {tokens} token(s) revoked"),
                        Revoke::Sessions => println!("{sessions} session(s) ended"),
                        Revoke::Tokens => println!("{tokens} token(s) revoked"),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

fn timestamp(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| secs.to_string())
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.worker_threads {
        runtime.worker_threads(n);
    }
    let runtime = runtime.enable_all().build().expect("tokio runtime");
    match runtime.block_on(portcullis::server::run(config, path, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(config.log_level.as_deref().unwrap_or("info")),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
