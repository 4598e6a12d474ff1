//! Shared by the evaluation examples: writing their section of
//! `benches/RESULTS.md` (as `benches`' `write_section` does for the other
//! suites, which these examples do not link).

use std::path::Path;

/// Replaces (or appends) the `## {title}` section of the results file.
pub fn write_section(path: &Path, title: &str, body: &str) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let header = format!("## {title}");
    let section = format!("{header}\n\n{body}\n");
    let text = match old.find(&header) {
        Some(start) => {
            let rest = &old[start + header.len()..];
            let end = rest
                .find("\n## ")
                .map(|e| start + header.len() + e + 1)
                .unwrap_or(old.len());
            format!("{}{}{}", &old[..start], section, &old[end..])
        }
        None => format!("{}\n\n{section}", old.trim_end()),
    };
    std::fs::write(path, text)?;
    Ok(())
}
