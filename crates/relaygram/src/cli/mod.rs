//! The `relaygram` command line: the server, and operator commands that mirror the API
//! (they work on the store directly, with admin rights).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::ids::rfc3339;
use crate::server;
use crate::services::{Principal, ServiceError, Services};
use crate::store::{ApiKeyRecord, BotFilter, BotRecord};

pub mod page;
pub use page::PageArgs;

/// relaygram — a self-hosted Telegram gateway.
#[derive(Debug, Parser)]
#[command(name = "relaygram", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./relaygram.toml when present.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: migrate the store, then serve the API until Ctrl-C or SIGTERM.
    Serve,
    /// Print the effective configuration, secrets masked.
    Config,
    /// Apply database migrations and exit.
    Migrate,
    /// Run the Telegram Bot API sandbox (an emulator for local development and tests).
    Sandbox(SandboxArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage bots.
    #[command(subcommand)]
    Bots(BotsCommand),
    /// Manage bot webhooks.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Send a message (as `POST /v1/messages`) and follow its delivery.
    Send(crate::delivery::command::SendArgs),
    /// Send to many (a category, a list) and follow the broadcast with a progress bar.
    Broadcast(crate::delivery::command::BroadcastArgs),
    /// Manage schedules (recurring messages).
    #[command(subcommand)]
    Schedules(crate::schedules::cli::SchedulesCommand),
    /// Manage gated chats (paid access to groups and channels).
    #[command(subcommand)]
    GatedChats(crate::memberships::cli::GatedChatsCommand),
    /// Grant, list and revoke entitlements (who may be in which gated chats).
    #[command(subcommand)]
    Entitlements(crate::memberships::cli::EntitlementsCommand),
}

/// `relaygram sandbox` options.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub bind: SocketAddr,
    /// Flood limits: `telegram` (enforced like Telegram) or `off`.
    #[arg(long, default_value = "telegram", value_parser = ["telegram", "off"])]
    pub limits: String,
    /// How limits are counted: `window` (at most N sends in any sliding window, no bursts)
    /// or `bucket` (token buckets that allow short bursts).
    #[arg(long, default_value = "window", value_parser = ["window", "bucket"])]
    pub limit_model: String,
    /// Clock speed factor (2.0 runs limits and retries twice as fast).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
}

/// `relaygram tenants …`
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant and print its id.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// List tenants.
    List(PageArgs),
}

/// `relaygram keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it (shown this once).
    Create {
        /// Tenant the key belongs to.
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        tenant: Option<String>,
        /// Create an admin key (all tenants) instead.
        #[arg(long)]
        admin: bool,
        /// A label for the key.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List keys (prefix only).
    List {
        /// Tenant whose keys to list.
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        tenant: Option<String>,
        /// List admin keys instead.
        #[arg(long)]
        admin: bool,
        /// Paging.
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revoke a key, effective immediately.
    Revoke {
        /// Key id (`key_…`).
        key_id: String,
    },
}

/// `relaygram bots …`
#[derive(Debug, Subcommand)]
pub enum BotsCommand {
    /// Add a bot: checks the token with getMe, stores it encrypted, registers the webhook.
    Add {
        /// Tenant that owns the bot.
        #[arg(long)]
        tenant: String,
        /// Bot token from @BotFather (prefer the environment variable: command lines are
        /// visible to other users of the machine).
        #[arg(long, env = "RELAYGRAM_BOT_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// List bots.
    List {
        /// Only this tenant's bots.
        #[arg(long)]
        tenant: Option<String>,
        /// Paging.
        #[command(flatten)]
        page: PageArgs,
    },
    /// Remove a bot (its webhook is deleted at Telegram).
    Remove {
        /// Bot id (`bot_…`).
        bot_id: String,
    },
    /// Set the update types a bot asks Telegram for.
    Updates {
        /// Bot id (`bot_…`).
        bot_id: String,
        /// Comma-separated update types (`message,callback_query,chat_join_request`), or
        /// `all` for every type Telegram sends.
        types: String,
    },
    /// Turn a built-in command (`start`, `help`, `settings`, `stop`) off, so the app
    /// handles it from `command.received`, or on again.
    Builtin {
        /// Bot id (`bot_…`).
        bot_id: String,
        /// `start`, `help`, `settings` or `stop`.
        command: String,
        /// `on` (relaygram answers it) or `off` (the app does).
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// What the bot says on its own (welcome, help, linking answers…), per language.
    #[command(subcommand)]
    Texts(TextsCommand),
}

/// `relaygram bots texts …`
#[derive(Debug, Subcommand)]
pub enum TextsCommand {
    /// Every text key of a bot, with the bot's texts per language.
    List {
        /// Bot id (`bot_…`).
        bot_id: String,
    },
    /// The text a user of `--language` gets (without: the default).
    Get {
        /// Bot id (`bot_…`).
        bot_id: String,
        /// Text key (`welcome`, `help`, `unknown_command`, …).
        key: String,
        /// A language tag like Telegram's `language_code` (`de`, `pt-br`).
        #[arg(long)]
        language: Option<String>,
    },
    /// Set a text (a minijinja template, checked first) for `--language` or the default.
    Set {
        /// Bot id (`bot_…`).
        bot_id: String,
        /// Text key.
        key: String,
        /// The template.
        text: String,
        /// A language tag (`de`, `pt-br`); without: the bot's default text.
        #[arg(long)]
        language: Option<String>,
    },
    /// Remove a text, so the next closest one applies again.
    Reset {
        /// Bot id (`bot_…`).
        bot_id: String,
        /// Text key.
        key: String,
        /// A language tag; without: the bot's default text.
        #[arg(long)]
        language: Option<String>,
    },
}

/// `relaygram webhook …`
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register (again) a bot's webhook, with a new secret.
    Register {
        /// Bot id (`bot_…`).
        #[arg(long)]
        bot: String,
        /// Public base URL; default: the configured `public_url`.
        #[arg(long)]
        base_url: Option<String>,
    },
}

fn print_key(k: &ApiKeyRecord) {
    println!(
        "{}\t{}\t{}\t{}…\t{}\t{}",
        k.id,
        k.tenant_id.as_deref().unwrap_or("(admin)"),
        k.name,
        k.prefix,
        rfc3339(k.created_at),
        k.revoked_at.map_or_else(
            || "active".to_string(),
            |t| format!("revoked {}", rfc3339(t))
        )
    );
}

fn print_bot(b: &BotRecord) {
    println!(
        "{}\t{}\t@{}\t{}\t{}\t{}",
        b.id,
        b.tenant_id,
        b.username,
        match b.mode {
            crate::store::BotMode::Webhook => "webhook",
            crate::store::BotMode::Polling => "polling",
        },
        if b.enabled { "enabled" } else { "disabled" },
        b.webhook_url.as_deref().unwrap_or("-")
    );
}

fn print_cursor(next: Option<&str>) {
    if let Some(next) = next {
        eprintln!("more: --after {next}");
    }
}

/// `relaygram bots texts …`: one line per text, `key<TAB>language<TAB>source` (`default`
/// for the bot's default; `(built-in)` after relaygram's own).
async fn texts_command(
    services: &Services,
    me: &Principal,
    command: TextsCommand,
) -> anyhow::Result<()> {
    let one_line = |t: &str| t.replace('\n', "\\n");
    match command {
        TextsCommand::List { bot_id } => {
            for k in services
                .list_bot_texts(me, &bot_id)
                .await
                .map_err(explain)?
            {
                println!(
                    "{}\tdefault\t{}\t(built-in)",
                    k.key.as_str(),
                    one_line(k.key.default_text())
                );
                for t in k.stored {
                    let language = t.language.as_deref().unwrap_or("default");
                    println!("{}\t{language}\t{}", k.key.as_str(), one_line(&t.text));
                }
            }
        }
        TextsCommand::Get {
            bot_id,
            key,
            language,
        } => {
            let t = services
                .get_bot_text(me, &bot_id, &key, language.as_deref())
                .await
                .map_err(explain)?;
            let built_in = if t.stored.is_none() {
                "\t(built-in)"
            } else {
                ""
            };
            println!(
                "{}\t{}\t{}{built_in}",
                t.key.as_str(),
                t.language.as_deref().unwrap_or("default"),
                one_line(&t.text)
            );
        }
        TextsCommand::Set {
            bot_id,
            key,
            text,
            language,
        } => {
            let (t, created) = services
                .put_bot_text(me, &bot_id, &key, language.as_deref(), text)
                .await
                .map_err(explain)?;
            println!(
                "{} {}\t{}\t{}",
                if created { "set" } else { "replaced" },
                t.key.as_str(),
                t.language.as_deref().unwrap_or("default"),
                one_line(&t.text)
            );
        }
        TextsCommand::Reset {
            bot_id,
            key,
            language,
        } => {
            services
                .delete_bot_text(me, &bot_id, &key, language.as_deref())
                .await
                .map_err(explain)?;
            println!(
                "removed {key} ({})",
                language.as_deref().unwrap_or("default")
            );
        }
    }
    Ok(())
}

fn explain(e: ServiceError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Runs an operator command against the store.
pub async fn run_admin_command(config: &Config, command: Command) -> anyhow::Result<()> {
    let services: Services = server::open_services(config).await?;
    let me = Principal::Operator;
    let result = match command {
        Command::Migrate => {
            println!(
                "migrations applied ({})",
                crate::config::mask_database_url(config.database_url.expose_secret())
            );
            Ok(())
        }
        Command::Tenants(TenantsCommand::Create { name }) => {
            let t = services.create_tenant(&me, &name).await.map_err(explain)?;
            println!("{}\t{}", t.id, t.name);
            Ok(())
        }
        Command::Tenants(TenantsCommand::List(page)) => {
            let listed = services
                .list_tenants(&me, &page.page())
                .await
                .map_err(explain)?;
            for t in &listed.items {
                println!("{}\t{}\t{}", t.id, t.name, rfc3339(t.created_at));
            }
            print_cursor(listed.next_cursor.as_deref());
            Ok(())
        }
        Command::Keys(KeysCommand::Create {
            tenant,
            admin,
            name,
        }) => {
            let created = match (admin, tenant) {
                (true, _) => services.create_admin_key(&name).await,
                (false, Some(tenant)) => services.create_api_key(&me, &tenant, Some(&name)).await,
                (false, None) => unreachable!("clap requires --tenant or --admin"),
            }
            .map_err(explain)?;
            eprintln!(
                "API key {} created. Store it now: it is not shown again.",
                created.record.id
            );
            println!("{}", created.key.expose_secret());
            Ok(())
        }
        Command::Keys(KeysCommand::List {
            tenant,
            admin,
            page,
        }) => {
            let listed = match (admin, tenant) {
                (true, _) => services.list_admin_keys(&page.page()).await,
                (false, Some(tenant)) => services.list_api_keys(&me, &tenant, &page.page()).await,
                (false, None) => unreachable!("clap requires --tenant or --admin"),
            }
            .map_err(explain)?;
            for k in &listed.items {
                print_key(k);
            }
            print_cursor(listed.next_cursor.as_deref());
            Ok(())
        }
        Command::Keys(KeysCommand::Revoke { key_id }) => {
            let k = services
                .revoke_api_key(&me, None, &key_id)
                .await
                .map_err(explain)?;
            println!("revoked {}", k.id);
            Ok(())
        }
        Command::Bots(BotsCommand::Add { tenant, token }) => {
            let b = services
                .add_bot(&me, &token, Some(&tenant))
                .await
                .map_err(explain)?;
            print_bot(&b);
            Ok(())
        }
        Command::Bots(BotsCommand::List { tenant, page }) => {
            let listed = services
                .list_bots(
                    &me,
                    BotFilter {
                        tenant_id: tenant,
                        ..BotFilter::default()
                    },
                    &page.page(),
                )
                .await
                .map_err(explain)?;
            for b in &listed.items {
                print_bot(b);
            }
            print_cursor(listed.next_cursor.as_deref());
            Ok(())
        }
        Command::Bots(BotsCommand::Remove { bot_id }) => {
            services.delete_bot(&me, &bot_id).await.map_err(explain)?;
            println!("removed {bot_id}");
            Ok(())
        }
        Command::Bots(BotsCommand::Builtin {
            bot_id,
            command,
            state,
        }) => {
            let changes = std::collections::BTreeMap::from([(command, state == "on")]);
            let changes =
                crate::texts::service::parse_builtin_changes(&changes).map_err(explain)?;
            let b = services
                .set_bot_builtins(&me, &bot_id, &changes)
                .await
                .map_err(explain)?;
            print_bot(&b);
            let off: Vec<&str> = b.builtins_off.iter().map(|c| c.as_str()).collect();
            println!(
                "built-in commands off: {}",
                if off.is_empty() {
                    "none".to_string()
                } else {
                    off.join(", ")
                }
            );
            Ok(())
        }
        Command::Bots(BotsCommand::Texts(command)) => texts_command(&services, &me, command).await,
        Command::Bots(BotsCommand::Updates { bot_id, types }) => {
            let allowed = (types.trim() != "all").then(|| {
                types
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
            });
            let b = services
                .set_bot_allowed_updates(&me, &bot_id, allowed)
                .await
                .map_err(explain)?;
            print_bot(&b);
            let list = crate::telegram::allowed_updates(b.allowed_updates.as_deref());
            println!("allowed updates: {}", list.join(", "));
            Ok(())
        }
        Command::Webhook(WebhookCommand::Register { bot, base_url }) => {
            let b = services
                .register_webhook(&me, &bot, base_url.as_deref())
                .await
                .map_err(explain)?;
            print_bot(&b);
            Ok(())
        }
        Command::Send(args) => crate::delivery::command::run(&services, &args, None).await,
        Command::Broadcast(args) => {
            crate::delivery::command::run(&services, &args.send, args.follow.as_deref()).await
        }
        Command::Schedules(command) => crate::schedules::cli::run(&services, command).await,
        Command::GatedChats(command) => {
            crate::memberships::cli::run_gated_chats(&services, command).await
        }
        Command::Entitlements(command) => {
            crate::memberships::cli::run_entitlements(&services, command).await
        }
        Command::Serve | Command::Config | Command::Sandbox(_) => {
            Err(anyhow::anyhow!("not an operator command"))
        }
    };
    services.store.close().await;
    result
}

/// `relaygram serve`: boots, prints where it listens and what to do next, serves until a
/// signal arrives, then shuts down gracefully.
pub async fn serve(config: &Config) -> anyhow::Result<()> {
    let signal = ShutdownSignal::install().context("cannot listen for signals")?;
    let boot = server::boot(config).await?;
    if boot.key_file_created {
        tracing::info!(
            path = %config.data_dir.join(crate::crypto::KEY_FILE).display(),
            "generated the secret key that encrypts bot tokens; back it up"
        );
    }
    let running = server::spawn(config, boot.services).await?;
    let url = running.url();
    println!("relaygram {} listening on {url}", env!("CARGO_PKG_VERSION"));
    println!(
        "  store: {} ({})",
        crate::config::mask_database_url(config.database_url.expose_secret()),
        running.services.store.engine()
    );
    println!("  telegram api: {}", config.telegram_api_url);
    match &config.public_url {
        Some(p) => println!("  public url: {p} (bots use webhooks)"),
        None => println!("  public url: unset (bots use polling)"),
    }
    println!();
    print_admin_key_status(config, boot.new_admin_key.as_ref(), boot.active_admin_keys);
    println!();
    println!("  Next: create a tenant");
    println!(
        "    curl -s -X POST {url}/v1/tenants -H \"Authorization: Bearer $ADMIN_KEY\" \
         -H 'Content-Type: application/json' -d '{{\"name\":\"My app\"}}'"
    );
    println!("  API description: {url}/v1/openapi.json");
    signal.wait().await;
    tracing::info!("shutting down");
    running.shutdown().await.context("graceful shutdown")?;
    Ok(())
}

/// Every start says where the admin key is, so a second start is no dead end.
fn print_admin_key_status(
    config: &Config,
    new_key: Option<&crate::services::CreatedKey>,
    active: i64,
) {
    const MAKE: &str = "relaygram keys create --admin";
    let with =
        "(run it with this server's configuration: same folder, --config or RELAYGRAM_* env)";
    if let Some(key) = new_key {
        println!("  Admin API key (shown once, store it now):");
        println!("    {}", key.key.expose_secret());
        println!("  Another one: {MAKE}");
    } else if active == 0 {
        println!(
            "  No active admin key (the configured admin_key / RELAYGRAM_ADMIN_KEY was revoked)."
        );
        println!("  Make one: {MAKE} {with}");
    } else if config.admin_key.is_some() {
        println!("  Admin API key: the one set in admin_key / RELAYGRAM_ADMIN_KEY.");
        println!("  Another one: {MAKE} {with}");
    } else {
        println!("  An admin API key exists ({active} active; it was printed when it was made).");
        println!("  Lost it? Make another: {MAKE} {with}");
    }
}

/// `relaygram sandbox`.
pub async fn sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    let limits = args
        .limits
        .parse::<relaygram_sandbox::Limits>()
        .map_err(|e| anyhow::anyhow!("--limits: {e}"))?;
    let limit_model = args
        .limit_model
        .parse::<relaygram_sandbox::LimitModel>()
        .map_err(|e| anyhow::anyhow!("--limit-model: {e}"))?;
    let config = relaygram_sandbox::SandboxConfig {
        bind: args.bind,
        limits,
        limit_model,
        time_scale: args.time_scale,
        ..relaygram_sandbox::SandboxConfig::default()
    };
    let signal = ShutdownSignal::install().context("cannot listen for signals")?;
    let sandbox = relaygram_sandbox::Sandbox::start(config)
        .await
        .with_context(|| format!("cannot start the sandbox on {}", args.bind))?;
    println!("{}", relaygram_sandbox::banner(&sandbox));
    signal.wait().await;
    sandbox.shutdown().await;
    Ok(())
}

/// Ctrl-C and SIGTERM, listened for from the moment it is installed (install it before
/// announcing readiness, so an early signal is not lost to the default action).
#[derive(Debug)]
pub struct ShutdownSignal {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Starts listening.
    pub fn install() -> std::io::Result<ShutdownSignal> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignal {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(ShutdownSignal {})
        }
    }

    /// Resolves when a signal arrives.
    pub async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
