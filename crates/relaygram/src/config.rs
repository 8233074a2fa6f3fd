//! Configuration: safe defaults → `relaygram.toml` → `RELAYGRAM_*` environment (env wins).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Commands per user per bot per minute when nothing is configured (`command_rate_per_minute`).
pub const DEFAULT_COMMANDS_PER_MINUTE: u32 = 10;
/// Default SQLite database, inside the default data folder.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:./relaygram-data/relaygram.db";
/// Default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Default Telegram Bot API base URL.
pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";
/// Default data folder (generated secret key lives here).
pub const DEFAULT_DATA_DIR: &str = "./relaygram-data";
/// Default maximum request body size in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when attached to a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        })
    }
}

/// The effective configuration of one relaygram process.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite:PATH` or `postgres://…`.
    pub database_url: SecretString,
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// Where Telegram can reach this server (no trailing slash). `None` → polling mode.
    pub public_url: Option<String>,
    /// Telegram Bot API base URL (no trailing slash).
    pub telegram_api_url: String,
    /// Log format.
    pub log_format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `relaygram=debug,info`.
    pub log_level: String,
    /// Folder for local state (the generated secret key).
    pub data_dir: PathBuf,
    /// 32-byte key (64 hex characters) that encrypts secrets at rest.
    pub secret_key: Option<SecretString>,
    /// Admin API key to ensure at start instead of generating one.
    pub admin_key: Option<SecretString>,
    /// Maximum accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Commands one Telegram user may send to one bot per minute (per process; ≥ 1).
    pub command_rate_per_minute: u32,
    /// Days processed inbound updates are kept in the audit log (≥ 1).
    pub update_retention_days: u32,
    /// Seconds a processor holds an update before another may take it (≥ 1); after a crash,
    /// its update is processed again once this passes.
    pub update_lease_seconds: u32,
    /// Telegram's flood limits the senders keep to (`[limits]` in the file,
    /// `RELAYGRAM_LIMITS_*` in the environment); each bot may override them.
    pub limits: SendLimits,
}

/// Sending limits (0 = no limit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendLimits {
    /// Messages per second per bot (Telegram: about 30; up to 1000 with paid broadcasts).
    pub per_bot_per_second: f64,
    /// Messages per second to one private chat (Telegram: 1).
    pub per_chat_per_second: f64,
    /// Messages per minute to one group, supergroup or channel (Telegram: 20).
    pub per_group_per_minute: f64,
}

impl Default for SendLimits {
    fn default() -> Self {
        SendLimits {
            per_bot_per_second: 30.0,
            per_chat_per_second: 1.0,
            per_group_per_minute: 20.0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: SecretString::from(DEFAULT_DATABASE_URL),
            bind: DEFAULT_BIND.parse().expect("valid default bind address"),
            public_url: None,
            telegram_api_url: DEFAULT_TELEGRAM_API_URL.to_string(),
            log_format: LogFormat::Pretty,
            log_level: "info".to_string(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            secret_key: None,
            admin_key: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            command_rate_per_minute: DEFAULT_COMMANDS_PER_MINUTE,
            update_retention_days: 7,
            update_lease_seconds: 60,
            limits: SendLimits::default(),
        }
    }
}

/// A setting that could not be used, named so the operator can fix it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{setting}` {message}")]
pub struct ConfigError {
    /// The setting's name (as in `relaygram.toml`; the env variable is `RELAYGRAM_` + upper case).
    pub setting: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(setting: &str, message: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    database_url: Option<String>,
    bind: Option<String>,
    public_url: Option<String>,
    telegram_api_url: Option<String>,
    log_format: Option<String>,
    log_level: Option<String>,
    data_dir: Option<String>,
    secret_key: Option<String>,
    admin_key: Option<String>,
    max_body_bytes: Option<String>,
    command_rate_per_minute: Option<String>,
    update_retention_days: Option<String>,
    update_lease_seconds: Option<String>,
    limits_per_bot_per_second: Option<String>,
    limits_per_chat_per_second: Option<String>,
    limits_per_group_per_minute: Option<String>,
}

/// Names of every setting, in display order.
pub const SETTINGS: &[&str] = &[
    "database_url",
    "bind",
    "public_url",
    "telegram_api_url",
    "log_format",
    "log_level",
    "data_dir",
    "secret_key",
    "admin_key",
    "max_body_bytes",
    "command_rate_per_minute",
    "update_retention_days",
    "update_lease_seconds",
    "limits_per_bot_per_second",
    "limits_per_chat_per_second",
    "limits_per_group_per_minute",
];

impl Config {
    /// Loads the configuration from the process environment and, if present, a TOML file.
    ///
    /// With `path` the file must exist; without it `./relaygram.toml` is read when present.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("RELAYGRAM_"))
            .collect();
        Self::load_from(path, env)
    }

    /// Like [`Config::load`], with an explicit environment (for tests).
    pub fn load_from(
        path: Option<&Path>,
        env: HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        match path {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::new(
                        "--config",
                        format!("file {} does not exist", path.display()),
                    ));
                }
                builder = builder.add_source(
                    config::File::from(path)
                        .format(config::FileFormat::Toml)
                        .required(true),
                );
            }
            None => {
                builder = builder.add_source(
                    config::File::with_name("relaygram.toml")
                        .format(config::FileFormat::Toml)
                        .required(false),
                );
            }
        }
        // Only our own settings are read from the environment, so unrelated
        // RELAYGRAM_* variables (e.g. RELAYGRAM_TEST_DATABASE_URL) are ignored.
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| {
                k.strip_prefix("RELAYGRAM_")
                    .is_some_and(|rest| SETTINGS.contains(&rest.to_ascii_lowercase().as_str()))
            })
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("RELAYGRAM")
                .prefix_separator("_")
                .try_parsing(false)
                .source(Some(env)),
        );
        let built = builder.build().map_err(|e| match e {
            config::ConfigError::FileParse { .. } => {
                ConfigError::new("--config", format!("is not valid TOML: {e}"))
            }
            other => ConfigError::new("--config", other.to_string()),
        })?;
        let mut raw = RawConfig::default();
        for name in SETTINGS {
            // `[limits] per_bot_per_second` in the file is `limits_per_bot_per_second` in
            // the environment (RELAYGRAM_LIMITS_PER_BOT_PER_SECOND); the env one wins.
            let nested = name
                .strip_prefix("limits_")
                .map(|rest| format!("limits.{rest}"));
            let value = match built.get::<config::Value>(name) {
                Ok(v) => v,
                Err(config::ConfigError::NotFound(_)) => {
                    match nested.as_deref().map(|n| built.get::<config::Value>(n)) {
                        Some(Ok(v)) => v,
                        None | Some(Err(config::ConfigError::NotFound(_))) => continue,
                        Some(Err(e)) => return Err(ConfigError::new(name, e.to_string())),
                    }
                }
                Err(e) => return Err(ConfigError::new(name, e.to_string())),
            };
            let text = value
                .into_string()
                .map_err(|e| ConfigError::new(name, format!("must be a string or number: {e}")))?;
            let slot = match *name {
                "database_url" => &mut raw.database_url,
                "bind" => &mut raw.bind,
                "public_url" => &mut raw.public_url,
                "telegram_api_url" => &mut raw.telegram_api_url,
                "log_format" => &mut raw.log_format,
                "log_level" => &mut raw.log_level,
                "data_dir" => &mut raw.data_dir,
                "secret_key" => &mut raw.secret_key,
                "admin_key" => &mut raw.admin_key,
                "command_rate_per_minute" => &mut raw.command_rate_per_minute,
                "update_retention_days" => &mut raw.update_retention_days,
                "update_lease_seconds" => &mut raw.update_lease_seconds,
                "limits_per_bot_per_second" => &mut raw.limits_per_bot_per_second,
                "limits_per_chat_per_second" => &mut raw.limits_per_chat_per_second,
                "limits_per_group_per_minute" => &mut raw.limits_per_group_per_minute,
                _ => &mut raw.max_body_bytes,
            };
            *slot = Some(text);
        }
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        if let Some(dir) = non_empty(raw.data_dir) {
            cfg.data_dir = PathBuf::from(dir);
            // Without an explicit database, the SQLite file lives in the data folder.
            cfg.database_url = SecretString::from(format!(
                "sqlite:{}",
                cfg.data_dir.join("relaygram.db").display()
            ));
        }
        if let Some(url) = non_empty(raw.database_url) {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(ConfigError::new(
                    "database_url",
                    "must start with `sqlite:` or `postgres://`",
                ));
            }
            cfg.database_url = SecretString::from(url);
        }
        if let Some(bind) = non_empty(raw.bind) {
            cfg.bind = bind.parse().map_err(|_| {
                ConfigError::new(
                    "bind",
                    format!("must be an address like 127.0.0.1:8080, got {bind:?}"),
                )
            })?;
        }
        if let Some(url) = non_empty(raw.public_url) {
            cfg.public_url = Some(parse_http_url("public_url", &url)?);
        }
        if let Some(url) = non_empty(raw.telegram_api_url) {
            cfg.telegram_api_url = parse_http_url("telegram_api_url", &url)?;
        }
        if let Some(format) = non_empty(raw.log_format) {
            cfg.log_format = match format.to_ascii_lowercase().as_str() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::new(
                        "log_format",
                        format!("must be `pretty` or `json`, got {format:?}"),
                    ));
                }
            };
        }
        if let Some(level) = non_empty(raw.log_level) {
            tracing_subscriber::EnvFilter::try_new(&level).map_err(|e| {
                ConfigError::new("log_level", format!("is not a valid filter: {e}"))
            })?;
            cfg.log_level = level;
        }
        if let Some(key) = non_empty(raw.secret_key) {
            if crate::ids::unhex(&key).is_none_or(|b| b.len() != 32) {
                return Err(ConfigError::new(
                    "secret_key",
                    "must be 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`",
                ));
            }
            cfg.secret_key = Some(SecretString::from(key));
        }
        if let Some(key) = non_empty(raw.admin_key) {
            if key.len() < 20 || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::new(
                    "admin_key",
                    "must be at least 20 characters without spaces",
                ));
            }
            cfg.admin_key = Some(SecretString::from(key));
        }
        if let Some(max) = non_empty(raw.max_body_bytes) {
            cfg.max_body_bytes = max
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1024)
                .ok_or_else(|| {
                    ConfigError::new("max_body_bytes", "must be a whole number ≥ 1024")
                })?;
        }
        if let Some(rate) = non_empty(raw.command_rate_per_minute) {
            cfg.command_rate_per_minute = rate
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ConfigError::new(
                        "command_rate_per_minute",
                        format!("must be a whole number ≥ 1 (commands per user per bot per minute), got {rate:?}"),
                    )
                })?;
        }
        if let Some(days) = non_empty(raw.update_retention_days) {
            cfg.update_retention_days = whole_number("update_retention_days", &days, 1)?;
        }
        if let Some(secs) = non_empty(raw.update_lease_seconds) {
            cfg.update_lease_seconds = whole_number("update_lease_seconds", &secs, 1)?;
        }
        for (name, value, slot) in [
            (
                "limits.per_bot_per_second",
                raw.limits_per_bot_per_second,
                &mut cfg.limits.per_bot_per_second,
            ),
            (
                "limits.per_chat_per_second",
                raw.limits_per_chat_per_second,
                &mut cfg.limits.per_chat_per_second,
            ),
            (
                "limits.per_group_per_minute",
                raw.limits_per_group_per_minute,
                &mut cfg.limits.per_group_per_minute,
            ),
        ] {
            if let Some(text) = non_empty(value) {
                *slot = text
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| {
                        ConfigError::new(
                            name,
                            format!("must be a number ≥ 0 (0 = no limit), got {text:?}"),
                        )
                    })?;
            }
        }
        Ok(cfg)
    }

    /// `true` when the database is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.expose_secret().starts_with("sqlite:")
    }

    /// The effective configuration as a valid `relaygram.toml`: secrets masked, unset
    /// settings as comments, so the output loads back (`relaygram config > relaygram.toml`).
    pub fn render_masked(&self) -> String {
        let db = mask_database_url(self.database_url.expose_secret());
        let mut out = String::from(
            "# relaygram's effective configuration (defaults, relaygram.toml, RELAYGRAM_* env).\n\
             # Secrets are not shown; unset settings are commented out.\n",
        );
        set(&mut out, "database_url", quote(&db));
        set(&mut out, "bind", quote(&self.bind.to_string()));
        match &self.public_url {
            Some(p) => set(&mut out, "public_url", quote(p)),
            None => out.push_str("# public_url = \"https://relaygram.example.com\"   # unset: bots run in polling mode\n"),
        }
        set(&mut out, "telegram_api_url", quote(&self.telegram_api_url));
        set(&mut out, "log_format", quote(&self.log_format.to_string()));
        set(&mut out, "log_level", quote(&self.log_level));
        set(
            &mut out,
            "data_dir",
            quote(&self.data_dir.display().to_string()),
        );
        out.push_str(&match &self.secret_key {
            Some(_) => "# secret_key = \"…\"   # set (hidden)\n".to_string(),
            None => format!(
                "# secret_key = \"…\"   # unset: generated once into {}\n",
                self.data_dir.join(crate::crypto::KEY_FILE).display()
            ),
        });
        out.push_str(match &self.admin_key {
            Some(_) => "# admin_key = \"…\"   # set (hidden)\n",
            None => {
                "# admin_key = \"…\"   # unset: generated on the first start of an empty store\n"
            }
        });
        set(&mut out, "max_body_bytes", self.max_body_bytes.to_string());
        set(
            &mut out,
            "command_rate_per_minute",
            self.command_rate_per_minute.to_string(),
        );
        set(
            &mut out,
            "update_retention_days",
            self.update_retention_days.to_string(),
        );
        set(
            &mut out,
            "update_lease_seconds",
            self.update_lease_seconds.to_string(),
        );
        out.push_str(&format!(
            "\n[limits]\nper_bot_per_second = {:?}\nper_chat_per_second = {:?}\nper_group_per_minute = {:?}\n",
            self.limits.per_bot_per_second,
            self.limits.per_chat_per_second,
            self.limits.per_group_per_minute
        ));
        out
    }
}

fn set(out: &mut String, key: &str, value: String) {
    out.push_str(&format!("{key} = {value}\n"));
}

fn whole_number(name: &'static str, text: &str, min: u32) -> Result<u32, ConfigError> {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| {
            ConfigError::new(
                name,
                format!("must be a whole number ≥ {min}, got {text:?}"),
            )
        })
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A TOML basic string (Rust's `{:?}` escapes are not all TOML).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn parse_http_url(setting: &str, value: &str) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(value)
        .map_err(|e| ConfigError::new(setting, format!("is not a valid URL ({e}): {value:?}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(
            setting,
            format!("must be an http:// or https:// URL, got {value:?}"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            setting,
            "must not have a query string or fragment",
        ));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// Hides the password in a URL (a database's, or a Telegram API URL with credentials).
pub fn mask_database_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("********"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_configuration() {
        let cfg = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(cfg.database_url.expose_secret(), DEFAULT_DATABASE_URL);
        assert_eq!(cfg.bind.to_string(), DEFAULT_BIND);
        assert_eq!(cfg.public_url, None);
        assert_eq!(cfg.telegram_api_url, DEFAULT_TELEGRAM_API_URL);
        assert_eq!(cfg.log_format, LogFormat::Pretty);
    }

    #[test]
    fn env_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relaygram.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:9000\"\npublic_url = \"https://file.example/\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let cfg = Config::load_from(
            Some(&file),
            env(&[
                ("RELAYGRAM_BIND", "0.0.0.0:7000"),
                ("RELAYGRAM_TEST_DATABASE_URL", "postgres://ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.bind.to_string(), "0.0.0.0:7000");
        assert_eq!(cfg.public_url.as_deref(), Some("https://file.example"));
        assert_eq!(cfg.log_format, LogFormat::Json);
    }

    #[test]
    fn send_limits_come_from_the_file_table_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relaygram.toml");
        std::fs::write(
            &file,
            "[limits]\nper_bot_per_second = 100\nper_group_per_minute = 10\n",
        )
        .unwrap();
        let cfg = Config::load_from(
            Some(&file),
            env(&[("RELAYGRAM_LIMITS_PER_GROUP_PER_MINUTE", "15")]),
        )
        .unwrap();
        assert_eq!(cfg.limits.per_bot_per_second, 100.0);
        assert_eq!(cfg.limits.per_chat_per_second, 1.0);
        assert_eq!(cfg.limits.per_group_per_minute, 15.0);
        let bad = Config::load_from(None, env(&[("RELAYGRAM_LIMITS_PER_BOT_PER_SECOND", "-1")]));
        assert!(bad.is_err());
    }

    #[test]
    fn command_rate_defaults_to_ten_and_is_configurable() {
        let cfg = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(cfg.command_rate_per_minute, 10);
        let cfg =
            Config::load_from(None, env(&[("RELAYGRAM_COMMAND_RATE_PER_MINUTE", "25")])).unwrap();
        assert_eq!(cfg.command_rate_per_minute, 25);
        assert!(cfg.render_masked().contains("command_rate_per_minute = 25"));
    }

    #[test]
    fn data_dir_moves_the_default_database() {
        let cfg =
            Config::load_from(None, env(&[("RELAYGRAM_DATA_DIR", "/var/lib/relaygram")])).unwrap();
        assert_eq!(
            cfg.database_url.expose_secret(),
            "sqlite:/var/lib/relaygram/relaygram.db"
        );
        let cfg = Config::load_from(
            None,
            env(&[
                ("RELAYGRAM_DATA_DIR", "/var/lib/relaygram"),
                ("RELAYGRAM_DATABASE_URL", "postgres://db/rg"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.database_url.expose_secret(), "postgres://db/rg");
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            ("RELAYGRAM_BIND", "localhost", "bind"),
            ("RELAYGRAM_DATABASE_URL", "mysql://x", "database_url"),
            ("RELAYGRAM_PUBLIC_URL", "ftp://x", "public_url"),
            (
                "RELAYGRAM_TELEGRAM_API_URL",
                "not a url",
                "telegram_api_url",
            ),
            ("RELAYGRAM_LOG_FORMAT", "xml", "log_format"),
            ("RELAYGRAM_SECRET_KEY", "abcd", "secret_key"),
            ("RELAYGRAM_ADMIN_KEY", "short", "admin_key"),
            ("RELAYGRAM_MAX_BODY_BYTES", "-1", "max_body_bytes"),
            (
                "RELAYGRAM_COMMAND_RATE_PER_MINUTE",
                "0",
                "command_rate_per_minute",
            ),
            (
                "RELAYGRAM_COMMAND_RATE_PER_MINUTE",
                "ten",
                "command_rate_per_minute",
            ),
        ];
        for (var, value, setting) in cases {
            let err = Config::load_from(None, env(&[(var, value)])).unwrap_err();
            assert_eq!(err.setting, setting, "{var}={value}");
            assert!(err.to_string().contains(setting));
        }
    }

    #[test]
    fn missing_or_broken_config_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = Config::load_from(Some(&missing), env(&[])).unwrap_err();
        assert_eq!(err.setting, "--config");
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, "bind = [").unwrap();
        let err = Config::load_from(Some(&broken), env(&[])).unwrap_err();
        assert_eq!(err.setting, "--config");
    }

    #[test]
    fn rendered_configuration_is_toml_that_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        for pairs in [
            vec![],
            vec![
                ("RELAYGRAM_DATABASE_URL", "postgres://app:pw@db/rg"),
                ("RELAYGRAM_PUBLIC_URL", "https://gw.example.com"),
                ("RELAYGRAM_SECRET_KEY", &"ab".repeat(32)),
                ("RELAYGRAM_ADMIN_KEY", "rg_admin_key_for_scripts_123"),
                ("RELAYGRAM_LOG_LEVEL", "relaygram=debug,info"),
                ("RELAYGRAM_DATA_DIR", "/tmp/a \"quoted\" dir"),
                ("RELAYGRAM_LIMITS_PER_BOT_PER_SECOND", "100"),
            ],
        ] {
            let cfg = Config::load_from(None, env(&pairs)).unwrap();
            let shown = cfg.render_masked();
            let parsed: toml::Table =
                toml::from_str(&shown).unwrap_or_else(|e| panic!("{e}\n{shown}"));
            assert_eq!(parsed["bind"].as_str(), Some(DEFAULT_BIND));
            assert_eq!(parsed.contains_key("public_url"), cfg.public_url.is_some());
            assert!(!parsed.contains_key("secret_key") && !parsed.contains_key("admin_key"));
            let file = dir.path().join("relaygram.toml");
            std::fs::write(&file, &shown).unwrap();
            let back = Config::load_from(Some(&file), env(&[])).unwrap();
            // Everything but the hidden secrets comes back as it was.
            let settings = |text: &str| -> Vec<String> {
                text.lines()
                    .filter(|l| !l.starts_with('#'))
                    .map(str::to_string)
                    .collect()
            };
            assert_eq!(settings(&back.render_masked()), settings(&shown));
            assert_eq!(back.data_dir, cfg.data_dir);
            assert_eq!(back.log_level, cfg.log_level);
            assert_eq!(back.limits, cfg.limits);
        }
    }

    #[test]
    fn secrets_are_masked() {
        let cfg = Config::load_from(
            None,
            env(&[
                (
                    "RELAYGRAM_DATABASE_URL",
                    "postgres://app:hunter2hunter2@db/rg",
                ),
                ("RELAYGRAM_SECRET_KEY", &"ab".repeat(32)),
                ("RELAYGRAM_ADMIN_KEY", "rg_admin_key_for_scripts_123"),
            ]),
        )
        .unwrap();
        let shown = cfg.render_masked();
        assert!(!shown.contains("hunter2hunter2"), "{shown}");
        assert!(!shown.contains(&"ab".repeat(32)), "{shown}");
        assert!(!shown.contains("rg_admin_key_for_scripts_123"), "{shown}");
        assert!(shown.contains("postgres://app:********@db/rg"), "{shown}");
        assert!(!format!("{cfg:?}").contains("hunter2hunter2"));
    }
}
