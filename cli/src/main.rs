//! `notary`: the client of a Notary v1 server (Go Notary 0.7 compatible), image signing
//! for docker versions without `docker trust`, and the `pki` certificate tool.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod client;
mod commands;
mod image;
mod pki;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "notary",
    version,
    about = "Notary client: sign and verify TUF trust data; `notary pki` manages certificates",
    after_help = "Examples:\n  notary -s https://notary.example.com:4443 init example.com/app -p\n  notary add example.com/app v1.0 ./app.tar.gz -p\n  notary list example.com/app\n  notary key rotate example.com/app snapshot -r\n  notary delegation add example.com/app targets/releases releases.crt --all-paths -p\n  notary pki ca init --cn \"Example Root CA\" --out-dir ca\n  notary pki issue server --ca-dir ca --cn notary.example.com --san DNS:notary.example.com,IP:10.0.0.5 --out-dir certs\n  notary pki verify --ca ca/ca.crt certs/notary.example.com.crt\n\nPassphrases: NOTARY_ROOT_PASSPHRASE, NOTARY_TARGETS_PASSPHRASE, NOTARY_SNAPSHOT_PASSPHRASE,\nNOTARY_DELEGATION_PASSPHRASE (else prompts). Token auth: NOTARY_AUTH=base64(user:password)."
)]
struct Cli {
    #[command(flatten)]
    global: client::GlobalOpts,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Certificate authority and certificates (TLS, mutual TLS, delegations).
    #[command(subcommand)]
    Pki(pki::Pki),
    /// Docker content trust for images (for docker versions without `docker trust`).
    #[command(subcommand)]
    Image(image::ImageCmd),
    #[command(flatten)]
    Repo(commands::RepoCmd),
}

fn main() {
    let cli = Cli::parse();
    // Go's CLI logs warnings by default, info with -v, debug with -D (to stderr).
    let level = if cli.global.debug {
        "debug"
    } else if cli.global.verbose {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "notary={level}"
        )))
        .init();
    let result = match cli.cmd {
        Cmd::Pki(p) => pki::run(p),
        Cmd::Image(c) => image::run(c, &cli.global),
        Cmd::Repo(c) => commands::run(c, &cli.global),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // Go's CLI prints fatal errors this way; causes already part of the message
            // are not repeated.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("* fatal: {msg}");
            std::process::exit(1);
        }
    }
}
