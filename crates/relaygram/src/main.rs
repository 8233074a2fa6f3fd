//! The `relaygram` binary.

use std::process::ExitCode;

use clap::Parser;
use relaygram::cli::{self, Cli, Command};
use relaygram::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Sandbox(args) = cli.command {
        let config = Config::default();
        relaygram::logging::init(&config);
        return report(cli::sandbox(args).await);
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Config => {
            print!("{}", config.render_masked());
            ExitCode::SUCCESS
        }
        Command::Serve => {
            relaygram::logging::init(&config);
            report(cli::serve(&config).await)
        }
        command => {
            // Operator commands log warnings only, so their output stays readable.
            let quiet = Config {
                log_level: "warn".into(),
                ..config.clone()
            };
            relaygram::logging::init(&quiet);
            report(cli::run_admin_command(&config, command).await)
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
