//! `medrl keys …`: generate Ed25519 keys for signing rule sets, and add their public half to a
//! keyring.

use super::Globals;
use anyhow::Context;
use clap::Subcommand;
use medrl::registry::signing::KeyFile;
use medrl::registry::trust::{Keyring, TrustedKey};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair: the private key file (mode 0600) and, printed, its keyring entry.
    Generate {
        /// Who holds the key, in words (e.g. "Dr. Li, clinical safety lead").
        #[arg(long)]
        name: String,
        /// Where to write the private key file (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
        /// Also add the public key to this keyring file (created when missing, with
        /// `min_signatures` written out: --min-signatures, else 1).
        #[arg(long)]
        add_to: Option<PathBuf>,
        /// The holder's role, recorded in the keyring entry (e.g. clinical-safety, compliance).
        #[arg(long, default_value = "")]
        role: String,
        /// A note stored in the key file.
        #[arg(long, default_value = "")]
        note: String,
    },
}

pub fn run(cmd: KeysCommand, g: &Globals) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate { name, out, add_to, role, note } => {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            let key = KeyFile::generate(&name, now.clone(), note)?;
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            key.write_new(&out)?;
            let entry = TrustedKey { id: key.key_id.clone(), name, public_key: key.public_key.clone(), role, added: now[..10].to_string() };
            println!("wrote private key {} (key id {}); keep it secret and out of the repository", out.display(), key.key_id);
            match add_to {
                Some(ring) => {
                    // A new keyring gets its threshold written out: --min-signatures, else 1.
                    let checked = Keyring::add_key(&ring, &entry, g.flags.min_signatures.unwrap_or(1))?;
                    println!(
                        "added key {} to {} ({} trusted keys, {} signature(s) required)",
                        key.key_id,
                        ring.display(),
                        checked.keys.len(),
                        checked.min_signatures
                    );
                }
                None => {
                    let mut table = toml::Table::new();
                    table.insert("keys".into(), toml::Value::Array(vec![toml::Value::try_from(&entry)?]));
                    println!("keyring entry:\n\n{}", toml::to_string(&table)?);
                }
            }
            Ok(())
        }
    }
}
