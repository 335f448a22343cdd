//! Markdown as its reader follows it: the section under a heading, and the
//! commands of a ```sh block. Used through `mod support` and, by
//! first_contact.rs, through `#[path]`.

use std::path::Path;

/// README.md's text.
pub fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md")
}

/// The text under the heading line `heading` (exactly), up to the next
/// heading of the same or a higher level.
pub fn section<'a>(text: &'a str, file: &str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = text
        .lines()
        .scan(0, |pos, l| {
            let at = *pos;
            *pos += l.len() + 1;
            Some((at, l))
        })
        .find(|(_, l)| l.trim_end() == heading)
        .map(|(at, l)| at + l.len() + 1)
        .unwrap_or_else(|| panic!("{file} has no heading {heading:?}"));
    let rest = &text[start.min(text.len())..];
    let mut end = rest.len();
    let mut pos = 0;
    let mut fenced = false;
    for l in rest.lines() {
        if l.starts_with("```") {
            fenced = !fenced;
        }
        let hashes = l.chars().take_while(|&c| c == '#').count();
        if !fenced && hashes > 0 && hashes <= level && l[hashes..].starts_with(' ') {
            end = pos;
            break;
        }
        pos += l.len() + 1;
    }
    &rest[..end]
}

/// The lines of the first ```sh block in `text` (`what` names it in the
/// panic when there is none), each without its trailing ` #` comment;
/// blank lines are left out.
pub fn first_sh_block<'a>(text: &'a str, what: &str) -> Vec<&'a str> {
    text.split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("{what} has no ```sh block"))
        .lines()
        .map(|line| line.split(" #").next().unwrap().trim())
        .filter(|line| !line.is_empty())
        .collect()
}
