//! `medrl keys …`: generate Ed25519 keys for signing rule sets, and add their public half to a
//! keyring.

use super::Globals;
use anyhow::Context;
use clap::Subcommand;
use medrl::registry::signing::KeyFile;
use medrl::registry::trust::Keyring;
use std::io::Write;
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
        /// Also append the public key to this keyring file (created when missing).
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

pub fn run(cmd: KeysCommand, _g: &Globals) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate { name, out, add_to, role, note } => {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            let key = KeyFile::generate(&name, now.clone(), note)?;
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            key.write_new(&out)?;
            let mut entry = format!("\n[[keys]]\nid = \"{}\"\nname = {}\npublic_key = \"{}\"\n", key.key_id, toml_string(&name), key.public_key);
            if !role.is_empty() {
                entry.push_str(&format!("role = {}\n", toml_string(&role)));
            }
            entry.push_str(&format!("added = \"{}\"\n", &now[..10]));
            println!("wrote private key {} (key id {}); keep it secret and out of the repository", out.display(), key.key_id);
            match add_to {
                Some(ring) => {
                    let mut file =
                        std::fs::OpenOptions::new().create(true).append(true).open(&ring).with_context(|| format!("opening {}", ring.display()))?;
                    file.write_all(entry.as_bytes()).with_context(|| format!("writing {}", ring.display()))?;
                    let checked = Keyring::read(&ring)?;
                    println!(
                        "added key {} to {} ({} trusted keys, {} signature(s) required)",
                        key.key_id,
                        ring.display(),
                        checked.keys.len(),
                        checked.min_signatures
                    );
                }
                None => println!("keyring entry:{entry}"),
            }
            Ok(())
        }
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
