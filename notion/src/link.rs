//! Notion page links as people paste them and as Notion writes them: a page's URL is
//! `https://www.notion.so/[workspace/]Title-Words-<32 hex id>[?…]`, and an id may be given bare
//! (32 hex digits) or dashed (a UUID).

/// The last path segment of a link, without its query or fragment.
fn last_segment(link: &str) -> &str {
    let path = link.trim().split(['?', '#']).next().unwrap_or_default();
    path.trim_end_matches('/').rsplit('/').next().unwrap_or_default()
}

/// The page id (dashed, lower case) in a page link, a bare id or a dashed id.
pub fn page_id(link: &str) -> Option<String> {
    let hex: String = last_segment(link).chars().filter(|c| *c != '-').collect();
    let tail = hex.get(hex.len().checked_sub(32)?..)?;
    tail.chars().all(|c| c.is_ascii_hexdigit()).then(|| {
        format!("{}-{}-{}-{}-{}", &tail[..8], &tail[8..12], &tail[12..16], &tail[16..20], &tail[20..]).to_lowercase()
    })
}

/// The title words of a Notion page URL (`…/Weekly-Review-1a2b…` → `Weekly Review`); `None` for
/// other URLs and for pages whose URL carries no title.
pub fn page_title(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    if !(path.contains("notion.so/") || path.contains("notion.site/")) {
        return None;
    }
    let (title, id) = last_segment(url).rsplit_once('-')?;
    let title = title.replace('-', " ");
    (id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) && !title.trim().is_empty()).then_some(title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_links_and_ids_are_read_as_people_paste_them() {
        let id = "1a2b3c4d5e6f708192a3b4c5d6e7f809";
        let dashed = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809";
        for link in [
            id.to_owned(),
            dashed.to_owned(),
            format!("https://www.notion.so/my-team/Home-{id}"),
            format!("https://www.notion.so/Home-{id}?pvs=4"),
            format!("  https://notion.so/{}/ ", id.to_uppercase()),
        ] {
            assert_eq!(page_id(&link).as_deref(), Some(dashed), "{link}");
        }
        assert_eq!(page_id("https://www.notion.so/Home"), None);
        assert_eq!(page_id(""), None);
        assert_eq!(page_id("zz2b3c4d5e6f708192a3b4c5d6e7f809"), None);
    }

    #[test]
    fn notion_urls_give_their_page_titles() {
        let id = "1a2b3c4d5e6f708192a3b4c5d6e7f809";
        assert_eq!(
            page_title(&format!("https://www.notion.so/team/Weekly-Review-{id}")).as_deref(),
            Some("Weekly Review")
        );
        assert_eq!(page_title(&format!("https://www.notion.so/{id}")), None, "no title in the URL");
        assert_eq!(page_title(&format!("https://example.com/Weekly-Review-{id}")), None, "not Notion");
    }
}
