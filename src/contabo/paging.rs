//! How the pages of a Contabo list add up, and when they do not.
//!
//! A list is read as: page 1 (which tells `totalElements`), then the pages
//! that count implies, at the page size the server actually served. What
//! comes back is checked before anyone plans from it: every page but the
//! last is full, the last holds the rest, no id appears twice, and the items
//! add up to page 1's `totalElements`. A server that lies in `_pagination`,
//! cuts pages short, or shifts rows between pages (the account changed
//! while it was read) fails one of these; the client then reads the list
//! again, a bounded number of times, and otherwise stops with
//! [`super::ContaboError::Paging`] rather than act on a partial list, which
//! could make a slot look empty and get it ordered twice.
//!
//! The arithmetic is here, pure; the requests are in [`super::client`].

use std::collections::HashSet;

use super::models::{
    Image, Instance, Pagination, PrivateNetwork, StoredSecret, Tag, TagAssignment,
};

/// Items asked for per page by default. Contabo documents no maximum and
/// its default is 10; public clients ask for 1,000. A server that serves
/// fewer per page is followed (see [`Layout::from_first_page`]), and one
/// that refuses the size with a 400 is asked again with
/// [`FALLBACK_PAGE_SIZE`].
pub const DEFAULT_PAGE_SIZE: u32 = 1000;

/// The page size asked for once after a 400 to a larger one: what
/// Contabo's own CLI asks for.
pub const FALLBACK_PAGE_SIZE: u32 = 100;

/// The largest page size the client asks for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// No listing fetches more pages than this, whatever the server says.
pub const MAX_PAGES: u64 = 10_000;

/// Times a list is read from page 1 before its inconsistency is an error.
pub const READS: u32 = 3;

/// What identifies an item within its list: two items with the same key in
/// one listing mean pages overlapped.
pub trait Listed {
    /// The item's id as text (ids of different lists never meet).
    fn list_key(&self) -> String;
}

impl Listed for Instance {
    fn list_key(&self) -> String {
        self.instance_id.to_string()
    }
}

impl Listed for Tag {
    fn list_key(&self) -> String {
        self.tag_id.to_string()
    }
}

impl Listed for TagAssignment {
    fn list_key(&self) -> String {
        format!("{}/{}", self.resource_type, self.resource_id)
    }
}

impl Listed for StoredSecret {
    fn list_key(&self) -> String {
        self.secret_id.to_string()
    }
}

impl Listed for Image {
    fn list_key(&self) -> String {
        self.image_id.clone()
    }
}

impl Listed for PrivateNetwork {
    fn list_key(&self) -> String {
        self.private_network_id.to_string()
    }
}

/// The shape of a whole list, from its first page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `totalElements` of page 1.
    pub total: u64,
    /// Items per page, as served (not as asked).
    pub size: u64,
    /// Pages to read: `ceil(total / size)`, at least 1.
    pub pages: u64,
}

impl Layout {
    /// The layout page 1 implies, or why page 1 cannot be followed.
    ///
    /// `asked` is the `size` sent; `served` the items page 1 held. A server
    /// that serves fewer than asked (a cap) is followed at the size it
    /// served, as long as its `_pagination.size` says so too; one whose
    /// `_pagination.size` claims more than it served has left items out.
    pub fn from_first_page(
        pagination: &Pagination,
        asked: u32,
        served: usize,
    ) -> Result<Self, String> {
        let total = count(pagination.total_elements).ok_or_else(|| {
            format!(
                "its _pagination.totalElements ({}) is not a count, so kiwi-infra cannot tell \
                 whether it was served every item",
                shown(pagination.total_elements)
            )
        })?;
        let served = u64::try_from(served).unwrap_or(u64::MAX);
        let asked = u64::from(asked.max(1));
        if served > asked {
            return Err(format!(
                "page 1 held {served} items, more than the {asked} asked for"
            ));
        }
        if served == 0 {
            return if total == 0 {
                Ok(Self {
                    total,
                    size: asked,
                    pages: 1,
                })
            } else {
                Err(format!(
                    "page 1 was empty, but _pagination.totalElements says {total}"
                ))
            };
        }
        if served > total {
            return Err(format!(
                "page 1 held {served} items, but _pagination.totalElements says {total}"
            ));
        }
        if served < asked && served < total {
            // Fewer served than asked while more exist: a cap, if the server
            // says its pages are that size; otherwise items were left out.
            if let Some(claimed) = count(pagination.size) {
                if claimed != served {
                    return Err(format!(
                        "page 1 held {served} items, but its _pagination.size says {claimed}"
                    ));
                }
            }
        }
        let size = if served < total { served } else { asked };
        let pages = total.div_ceil(size).max(1);
        // totalPages must say the same; a number that contradicts the
        // count (or is not a count) means one of the two lies, and
        // believing the smaller could leave pages unread.
        let announced = total.div_ceil(size);
        match count(pagination.total_pages) {
            Some(p) if p == announced || (total == 0 && p <= 1) => {}
            _ => {
                return Err(format!(
                    "its _pagination.totalPages ({}) contradicts totalElements {total} at {size} \
                     a page ({announced} page(s))",
                    shown(pagination.total_pages)
                ))
            }
        }
        if pages > MAX_PAGES {
            return Err(format!(
                "{total} elements at {size} a page would take {pages} pages, more than the \
                 {MAX_PAGES} kiwi-infra reads"
            ));
        }
        Ok(Self { total, size, pages })
    }

    /// How many items page `page` (1-based) must hold.
    pub fn expected_on(&self, page: u64) -> u64 {
        let before = (page - 1).saturating_mul(self.size);
        self.total.saturating_sub(before).min(self.size)
    }
}

/// Items collected page by page, checked as they arrive.
#[derive(Debug)]
pub struct Collector<T> {
    layout: Layout,
    items: Vec<T>,
    seen: HashSet<String>,
}

impl<T: Listed> Collector<T> {
    /// Starts with page 1's items (`first_has_next`: its `_links` name a
    /// next page).
    pub fn new(layout: Layout, first: Vec<T>, first_has_next: bool) -> Result<Self, String> {
        let mut c = Self {
            layout,
            items: Vec::with_capacity(usize::try_from(layout.total).unwrap_or(0).min(100_000)),
            seen: HashSet::new(),
        };
        c.add(1, first, first_has_next)?;
        Ok(c)
    }

    /// Adds page `page` (`has_next`: its `_links` name a next page), or
    /// says why the list does not add up.
    pub fn add(&mut self, page: u64, items: Vec<T>, has_next: bool) -> Result<(), String> {
        if page == self.layout.pages && has_next {
            return Err(format!(
                "page {page} should be the last, but its _links name a next page"
            ));
        }
        let got = u64::try_from(items.len()).unwrap_or(u64::MAX);
        let expected = self.layout.expected_on(page);
        if got != expected {
            return Err(format!(
                "page {page} held {got} items where {expected} were due ({} elements at {} a \
                 page)",
                self.layout.total, self.layout.size
            ));
        }
        for item in items {
            let key = item.list_key();
            if !self.seen.insert(key.clone()) {
                return Err(format!(
                    "id {key} appeared twice (again on page {page}): pages overlapped"
                ));
            }
            self.items.push(item);
        }
        Ok(())
    }

    /// Every item, once all pages are in and they add up.
    pub fn finish(self) -> Result<Vec<T>, String> {
        let got = u64::try_from(self.items.len()).unwrap_or(u64::MAX);
        if got != self.layout.total {
            return Err(format!(
                "{got} items were served where _pagination.totalElements said {}",
                self.layout.total
            ));
        }
        Ok(self.items)
    }
}

/// A number from a server as it may be shown: huge or odd values are
/// abbreviated (a `1e300` is not printed as 301 digits).
pub fn shown(n: f64) -> String {
    if count(n).is_some() {
        format!("{n}")
    } else {
        format!("{n:e}")
    }
}

/// A server's count, if it is one: a whole, non-negative number an f64
/// holds exactly. Negative, NaN, infinite, fractional or astronomical
/// values (`1e300`) are not counts.
pub fn count(n: f64) -> Option<u64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
                                                // `as` is exact here: a whole number within 2^53.
    (n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= EXACT).then_some(n as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(size: f64, total_elements: f64, total_pages: f64) -> Pagination {
        Pagination {
            size,
            total_elements,
            total_pages,
            page: 1.0,
        }
    }

    #[derive(Debug, PartialEq)]
    struct Item(u32);
    impl Listed for Item {
        fn list_key(&self) -> String {
            self.0.to_string()
        }
    }

    fn items(range: std::ops::Range<u32>) -> Vec<Item> {
        range.map(Item).collect()
    }

    #[test]
    fn honest_pages_are_followed_at_the_size_served() {
        // Asked 1,000, served 1,000 of 2,000.
        let l = Layout::from_first_page(&p(1000.0, 2000.0, 2.0), 1000, 1000).unwrap();
        assert_eq!((l.size, l.pages), (1000, 2));
        // Asked 1,000, a server capped at 100 says so.
        let l = Layout::from_first_page(&p(100.0, 2000.0, 20.0), 1000, 100).unwrap();
        assert_eq!((l.size, l.pages), (100, 20));
        // Everything on one page.
        let l = Layout::from_first_page(&p(1000.0, 7.0, 1.0), 1000, 7).unwrap();
        assert_eq!((l.size, l.pages), (1000, 1));
        // Nothing at all.
        let l = Layout::from_first_page(&p(1000.0, 0.0, 0.0), 1000, 0).unwrap();
        assert_eq!(l.pages, 1);
        assert_eq!(l.expected_on(1), 0);
    }

    #[test]
    fn a_total_pages_that_contradicts_the_count_is_refused() {
        for pages in [1e300, f64::INFINITY, f64::NAN, -1.0, 0.0, 4e15, 2.0, 4.0] {
            assert!(
                Layout::from_first_page(&p(100.0, 250.0, pages), 100, 100).is_err(),
                "{pages}"
            );
        }
        let l = Layout::from_first_page(&p(100.0, 250.0, 3.0), 100, 100).unwrap();
        assert_eq!(l.pages, 3);
        // A full page 1 that claims to be everything while totalPages says 2.
        assert!(Layout::from_first_page(&p(1000.0, 1000.0, 2.0), 1000, 1000).is_err());
        // An empty list may say 0 or 1 pages.
        for pages in [0.0, 1.0] {
            assert!(Layout::from_first_page(&p(1000.0, 0.0, pages), 1000, 0).is_ok());
        }
    }

    #[test]
    fn a_next_link_on_the_last_page_is_refused() {
        let layout = Layout::from_first_page(&p(10.0, 25.0, 3.0), 10, 10).unwrap();
        let mut c = Collector::new(layout, items(0..10), true).unwrap();
        c.add(2, items(10..20), true).unwrap();
        assert!(c.add(3, items(20..25), true).is_err());
        let one = Layout::from_first_page(&p(10.0, 10.0, 1.0), 10, 10).unwrap();
        assert!(Collector::new(one, items(0..10), true).is_err());
        assert!(Collector::new(one, items(0..10), false).is_ok());
    }

    #[test]
    fn totals_that_are_not_counts_or_contradict_page_one_are_refused() {
        for total in [f64::NAN, -1.0, 2.5, 1e300, f64::INFINITY] {
            assert!(Layout::from_first_page(&p(100.0, total, 1.0), 100, 10).is_err());
        }
        // Fewer elements announced than page 1 holds.
        assert!(Layout::from_first_page(&p(100.0, 5.0, 1.0), 100, 10).is_err());
        // An empty page 1 of a non-empty list.
        assert!(Layout::from_first_page(&p(100.0, 5.0, 1.0), 100, 0).is_err());
        // More served than asked.
        assert!(Layout::from_first_page(&p(100.0, 500.0, 5.0), 100, 101).is_err());
        // Served fewer than its own _pagination.size says: items were left out.
        assert!(Layout::from_first_page(&p(100.0, 500.0, 5.0), 100, 60).is_err());
        // Astronomical but exact counts: more pages than kiwi-infra reads.
        assert!(Layout::from_first_page(&p(1.0, 1e12, 1e12), 1, 1).is_err());
    }

    #[test]
    fn short_long_or_overlapping_pages_do_not_add_up() {
        let layout = Layout::from_first_page(&p(10.0, 25.0, 3.0), 10, 10).unwrap();
        let mut c = Collector::new(layout, items(0..10), true).unwrap();
        c.add(2, items(10..20), true).unwrap();
        c.add(3, items(20..25), false).unwrap();
        assert_eq!(c.finish().unwrap().len(), 25);

        let mut c = Collector::new(layout, items(0..10), true).unwrap();
        assert!(c.add(2, items(10..19), true).is_err(), "short page");
        let mut c = Collector::new(layout, items(0..10), true).unwrap();
        assert!(c.add(2, items(9..19), true).is_err(), "a row repeated");
        let mut c = Collector::new(layout, items(0..10), true).unwrap();
        c.add(2, items(11..21), true).unwrap(); // a row skipped: 10 is missing...
        assert!(c.add(3, items(21..26), false).is_ok());
        // ...which only the ids could tell; the count still adds up, and
        // the ordering (`orderBy`) is what keeps pages from shifting.
        let mut c = Collector::new(layout, items(0..10), true).unwrap();
        c.add(2, items(10..20), true).unwrap();
        assert!(c.add(3, items(20..24), false).is_err(), "last page short");
        let c = Collector::new(layout, items(0..10), true).unwrap();
        assert!(c.finish().is_err(), "pages missing");
    }

    #[test]
    fn counts_are_whole_finite_and_exact() {
        assert_eq!(count(f64::NAN), None);
        assert_eq!(count(-3.0), None);
        assert_eq!(count(2.5), None);
        assert_eq!(count(1e300), None);
        assert_eq!(count(7.0), Some(7));
    }
}
