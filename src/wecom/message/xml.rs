//! WeCom's XML documents are flat: a root element whose children hold text, plus
//! `MemChangeList` with `<Item>` grandchildren. We collect the children we know into
//! a fixed table, borrowing from the input where possible, in one pass:
//! - [`scan_canonical`] reads the exact shape WeCom sends with plain string scanning
//!   and gives up on anything else (no markup declarations, comments, attributes or
//!   `&` at all, so it cannot meet an entity);
//! - [`scan_general`] reads any well-formed document with quick-xml, refuses DTDs
//!   and unknown entities, and skips deeper structure with a depth counter, never
//!   recursion.

use std::borrow::Cow;

use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::Event as XmlEvent;
use quick_xml::Reader;

use super::{
    AppHeader, AppText, ChatChangeType, ContactChangeType, EnterAgent, Event, ExternalChatChange,
    ExternalContactChange, ParseError, XmlEnvelope,
};

/// The child elements we read. Matching is ASCII case-insensitive because WeCom's own
/// samples are not consistent (`AgentID` / `AgentId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    ToUserName,
    FromUserName,
    CreateTime,
    MsgType,
    Event,
    AgentId,
    Encrypt,
    ChatId,
    ChangeType,
    UpdateDetail,
    JoinScene,
    QuitScene,
    MemChangeCnt,
    MemChangeList,
    LastMemVer,
    CurMemVer,
    UserId,
    ExternalUserId,
    State,
    WelcomeCode,
    Source,
    FailReason,
    Content,
    MsgId,
    EventKey,
}

const TAG_COUNT: usize = Tag::EventKey as usize + 1;
/// Longer names cannot be one of ours; skip them without copying.
const LONGEST_TAG: usize = "externaluserid".len();

impl Tag {
    fn classify(name: &[u8]) -> Option<Tag> {
        Self::classify_exact(name).or_else(|| Self::classify_any_case(name))
    }

    /// The documented spelling: the common case, no copy.
    fn classify_exact(name: &[u8]) -> Option<Tag> {
        let tag = match name {
            b"ToUserName" => Tag::ToUserName,
            b"FromUserName" => Tag::FromUserName,
            b"CreateTime" => Tag::CreateTime,
            b"MsgType" => Tag::MsgType,
            b"Event" => Tag::Event,
            b"AgentID" => Tag::AgentId,
            b"Encrypt" => Tag::Encrypt,
            b"ChatId" => Tag::ChatId,
            b"ChangeType" => Tag::ChangeType,
            b"UpdateDetail" => Tag::UpdateDetail,
            b"JoinScene" => Tag::JoinScene,
            b"QuitScene" => Tag::QuitScene,
            b"MemChangeCnt" => Tag::MemChangeCnt,
            b"MemChangeList" => Tag::MemChangeList,
            b"LastMemVer" => Tag::LastMemVer,
            b"CurMemVer" => Tag::CurMemVer,
            b"UserID" => Tag::UserId,
            b"ExternalUserID" => Tag::ExternalUserId,
            b"State" => Tag::State,
            b"WelcomeCode" => Tag::WelcomeCode,
            b"Source" => Tag::Source,
            b"FailReason" => Tag::FailReason,
            b"Content" => Tag::Content,
            b"MsgId" => Tag::MsgId,
            b"EventKey" => Tag::EventKey,
            _ => return None,
        };
        Some(tag)
    }

    fn classify_any_case(name: &[u8]) -> Option<Tag> {
        if name.len() > LONGEST_TAG {
            return None;
        }
        let mut buffer = [0u8; LONGEST_TAG];
        let lower = &mut buffer[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        let tag = match &*lower {
            b"tousername" => Tag::ToUserName,
            b"fromusername" => Tag::FromUserName,
            b"createtime" => Tag::CreateTime,
            b"msgtype" => Tag::MsgType,
            b"event" => Tag::Event,
            b"agentid" => Tag::AgentId,
            b"encrypt" => Tag::Encrypt,
            b"chatid" => Tag::ChatId,
            b"changetype" => Tag::ChangeType,
            b"updatedetail" => Tag::UpdateDetail,
            b"joinscene" => Tag::JoinScene,
            b"quitscene" => Tag::QuitScene,
            b"memchangecnt" => Tag::MemChangeCnt,
            b"memchangelist" => Tag::MemChangeList,
            b"lastmemver" => Tag::LastMemVer,
            b"curmemver" => Tag::CurMemVer,
            b"userid" => Tag::UserId,
            b"externaluserid" => Tag::ExternalUserId,
            b"state" => Tag::State,
            b"welcomecode" => Tag::WelcomeCode,
            b"source" => Tag::Source,
            b"failreason" => Tag::FailReason,
            b"content" => Tag::Content,
            b"msgid" => Tag::MsgId,
            b"eventkey" => Tag::EventKey,
            _ => return None,
        };
        Some(tag)
    }

    /// The documented spelling, used in error messages.
    fn wire_name(self) -> &'static str {
        match self {
            Tag::ToUserName => "ToUserName",
            Tag::FromUserName => "FromUserName",
            Tag::CreateTime => "CreateTime",
            Tag::MsgType => "MsgType",
            Tag::Event => "Event",
            Tag::AgentId => "AgentID",
            Tag::Encrypt => "Encrypt",
            Tag::ChatId => "ChatId",
            Tag::ChangeType => "ChangeType",
            Tag::UpdateDetail => "UpdateDetail",
            Tag::JoinScene => "JoinScene",
            Tag::QuitScene => "QuitScene",
            Tag::MemChangeCnt => "MemChangeCnt",
            Tag::MemChangeList => "MemChangeList",
            Tag::LastMemVer => "LastMemVer",
            Tag::CurMemVer => "CurMemVer",
            Tag::UserId => "UserID",
            Tag::ExternalUserId => "ExternalUserID",
            Tag::State => "State",
            Tag::WelcomeCode => "WelcomeCode",
            Tag::Source => "Source",
            Tag::FailReason => "FailReason",
            Tag::Content => "Content",
            Tag::MsgId => "MsgId",
            Tag::EventKey => "EventKey",
        }
    }
}

/// The text of one element, built from its Text and CDATA pieces. Usually a single
/// piece, which stays borrowed from the input.
#[derive(Default)]
struct TextAccumulator<'a> {
    all: Option<Cow<'a, str>>,
    cdata_only: Option<Cow<'a, str>>,
    has_cdata: bool,
    has_significant_text: bool,
}

impl<'a> TextAccumulator<'a> {
    fn push_text(&mut self, piece: Cow<'a, str>) {
        if !is_xml_whitespace(&piece) {
            self.has_significant_text = true;
        }
        append(&mut self.all, piece);
    }

    fn push_cdata(&mut self, piece: Cow<'a, str>) {
        self.has_cdata = true;
        append(&mut self.cdata_only, piece.clone());
        append(&mut self.all, piece);
    }

    /// Whitespace around a CDATA section is layout, not content
    /// (`<Content>\n  <![CDATA[…]]>\n</Content>`); otherwise text is kept exactly.
    fn finish(self) -> Cow<'a, str> {
        let value = if self.has_cdata && !self.has_significant_text {
            self.cdata_only
        } else {
            self.all
        };
        value.unwrap_or(Cow::Borrowed(""))
    }
}

fn append<'a>(slot: &mut Option<Cow<'a, str>>, piece: Cow<'a, str>) {
    *slot = Some(match slot.take() {
        None => piece,
        Some(previous) => {
            let mut joined = previous.into_owned();
            joined.push_str(&piece);
            Cow::Owned(joined)
        }
    });
}

/// XML's whitespace (space, tab, CR, LF); not Unicode whitespace.
const XML_WHITESPACE: [char; 4] = [' ', '\t', '\r', '\n'];

fn is_xml_whitespace(text: &str) -> bool {
    text.bytes().all(is_xml_whitespace_byte)
}

fn is_xml_whitespace_byte(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// The known children of the root, by [`Tag`].
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Fields<'a> {
    values: [Option<Cow<'a, str>>; TAG_COUNT],
    /// `<Item>` texts under `MemChangeList`; `None` when it had no `<Item>` children.
    mem_change_items: Option<Vec<Cow<'a, str>>>,
}

impl<'a> Fields<'a> {
    fn get(&self, tag: Tag) -> Option<&str> {
        self.values[tag as usize].as_deref()
    }

    fn store(&mut self, tag: Tag, value: Cow<'a, str>) -> Result<(), ParseError> {
        let slot = &mut self.values[tag as usize];
        if slot.is_some() {
            // Two values for one field: refuse rather than guess which one is true.
            return Err(ParseError::invalid(
                tag.wire_name(),
                "appears more than once",
            ));
        }
        *slot = Some(value);
        Ok(())
    }

    /// Present and non-empty, kept exactly (no trimming).
    fn required_text(&self, tag: Tag) -> Result<String, ParseError> {
        match self.get(tag) {
            None => Err(ParseError::MissingField(tag.wire_name())),
            Some("") => Err(ParseError::invalid(tag.wire_name(), "must not be empty")),
            Some(text) => Ok(text.to_owned()),
        }
    }

    /// Absent and empty both mean "not given".
    fn optional_text(&self, tag: Tag) -> Option<String> {
        self.get(tag)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    }

    /// Routing values (`MsgType`, `Event`, `ChangeType`, …) with layout whitespace removed.
    fn keyword(&self, tag: Tag) -> Option<&str> {
        self.get(tag).map(trim_xml_whitespace)
    }

    fn required_number<T: std::str::FromStr>(
        &self,
        tag: Tag,
        expected: &'static str,
    ) -> Result<T, ParseError> {
        self.optional_number(tag, expected)?
            .ok_or(ParseError::MissingField(tag.wire_name()))
    }

    /// Parses digits directly (`u64`/`i64`, never through a float); empty means absent.
    fn optional_number<T: std::str::FromStr>(
        &self,
        tag: Tag,
        expected: &'static str,
    ) -> Result<Option<T>, ParseError> {
        match self.keyword(tag) {
            None | Some("") => Ok(None),
            Some(digits) => digits
                .parse()
                .map(Some)
                .map_err(|_| ParseError::invalid(tag.wire_name(), format!("must be {expected}"))),
        }
    }
}

fn trim_xml_whitespace(text: &str) -> &str {
    // Bytewise: all four whitespace characters are ASCII, so the cuts land on char
    // boundaries; cheaper than a char-pattern trim on this hot path.
    let bytes = text.as_bytes();
    let start = bytes
        .iter()
        .position(|byte| !is_xml_whitespace_byte(*byte))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|byte| !is_xml_whitespace_byte(*byte))
        .map_or(start, |last| last + 1);
    text.get(start..end).unwrap_or("")
}

/// What the child of the root we are inside is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inside {
    /// A child we read.
    Field(Tag),
    /// A child we skip (and everything below it).
    Ignored,
}

/// State of the single pass: where we are and what we have collected so far.
struct Scanner<'a> {
    fields: Fields<'a>,
    /// Number of open elements; 1 = inside the root.
    depth: usize,
    root_seen: bool,
    /// The element at depth 2.
    field: Inside,
    /// Inside an `<Item>` directly under `MemChangeList` (depth 3).
    in_item: bool,
    field_text: TextAccumulator<'a>,
    item_text: TextAccumulator<'a>,
}

impl<'a> Scanner<'a> {
    fn open(&mut self, local_name: &[u8]) -> Result<(), ParseError> {
        self.depth += 1;
        match self.depth {
            1 if self.root_seen => return Err(ParseError::malformed("more than one root element")),
            1 => self.root_seen = true,
            2 => {
                self.field = Tag::classify(local_name).map_or(Inside::Ignored, Inside::Field);
                self.field_text = TextAccumulator::default();
            }
            3 => {
                self.in_item = self.field == Inside::Field(Tag::MemChangeList)
                    && local_name.eq_ignore_ascii_case(b"item");
                self.item_text = TextAccumulator::default();
            }
            _ => {}
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), ParseError> {
        match self.depth {
            2 => {
                if let Inside::Field(tag) = self.field {
                    let mut value = std::mem::take(&mut self.field_text).finish();
                    if tag == Tag::MemChangeList && self.fields.mem_change_items.is_some() {
                        // With `<Item>` children the text between them is layout.
                        value = Cow::Borrowed("");
                    }
                    self.fields.store(tag, value)?;
                }
                self.field = Inside::Ignored;
            }
            3 if self.in_item => {
                let item = std::mem::take(&mut self.item_text).finish();
                self.fields
                    .mem_change_items
                    .get_or_insert_with(Vec::new)
                    .push(item);
                self.in_item = false;
            }
            _ => {}
        }
        // quick-xml refuses unmatched end tags, so depth is at least 1 here.
        self.depth = self.depth.saturating_sub(1);
        Ok(())
    }

    /// Whether text at the current position is part of a value we keep.
    fn wants_text(&self) -> bool {
        match self.depth {
            2 => self.field != Inside::Ignored,
            3 => self.in_item,
            _ => false,
        }
    }

    fn text(&mut self, piece: Cow<'a, str>) -> Result<(), ParseError> {
        match self.depth {
            0 if !is_xml_whitespace(&piece) => {
                return Err(ParseError::malformed("text outside the root element"))
            }
            2 if self.field != Inside::Ignored => self.field_text.push_text(piece),
            3 if self.in_item => self.item_text.push_text(piece),
            _ => {}
        }
        Ok(())
    }

    fn cdata(&mut self, piece: Cow<'a, str>) -> Result<(), ParseError> {
        match self.depth {
            0 => return Err(ParseError::malformed("CDATA outside the root element")),
            2 if self.field != Inside::Ignored => self.field_text.push_cdata(piece),
            3 if self.in_item => self.item_text.push_cdata(piece),
            _ => {}
        }
        Ok(())
    }
}

/// Reads the whole document in one pass and returns the root's known children.
fn scan(document: &str) -> Result<Fields<'_>, ParseError> {
    match scan_canonical(document) {
        Some(fields) => Ok(fields),
        None => scan_general(document),
    }
}

/// Fast path for the exact shape WeCom sends: `<xml>` holding `<Name><![CDATA[v]]></Name>`
/// or `<Name>text</Name>` children (and `<Item>`s under `MemChangeList`), separated
/// by whitespace. It accepts only a strict subset of well-formed XML with no markup
/// declarations, comments, attributes or `&` at all, and gives up (`None`) on
/// anything else, leaving the document to the quick-xml path, which then decides.
/// It exists because quick-xml's per-event cost dominates parsing of these small
/// documents; a property test checks both paths agree wherever this one answers.
pub(super) fn scan_canonical(document: &str) -> Option<Fields<'_>> {
    let mut cursor = Cursor {
        document,
        position: 0,
    };
    let mut fields = Fields {
        values: Default::default(),
        mem_change_items: None,
    };
    cursor.skip_whitespace();
    cursor.eat("<").then_some(())?;
    let root = cursor.name()?;
    cursor.eat(">").then_some(())?;
    loop {
        cursor.skip_whitespace();
        if cursor.eat("</") {
            (cursor.eat(root) && cursor.eat(">")).then_some(())?;
            break;
        }
        cursor.eat("<").then_some(())?;
        let name = cursor.name()?;
        cursor.eat(">").then_some(())?;
        let tag = Tag::classify(name.as_bytes());
        if tag == Some(Tag::MemChangeList) && cursor.next_after_whitespace_is("<Item>") {
            let mut items = Vec::new();
            loop {
                cursor.skip_whitespace();
                if cursor.eat("<Item>") {
                    items.push(Cow::Borrowed(cursor.value()?));
                    cursor.eat("</Item>").then_some(())?;
                } else {
                    break;
                }
            }
            fields.store(Tag::MemChangeList, Cow::Borrowed("")).ok()?;
            fields.mem_change_items = Some(items);
        } else {
            let value = cursor.value()?;
            if let Some(tag) = tag {
                fields.store(tag, Cow::Borrowed(value)).ok()?;
            }
        }
        // The end tag must repeat the name exactly; `</ChatIdX>` fails at `>`.
        (cursor.eat("</") && cursor.eat(name) && cursor.eat(">")).then_some(())?;
    }
    cursor.skip_whitespace();
    (cursor.position == document.len()).then_some(fields)
}

/// A position in a document being read by [`scan_canonical`]. Every slice goes
/// through `str::get`, so a bad position means `None`, never a panic.
struct Cursor<'a> {
    document: &'a str,
    position: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        self.document.get(self.position..).unwrap_or("")
    }

    fn skip_whitespace(&mut self) {
        let rest = self.rest().as_bytes();
        self.position += rest
            .iter()
            .position(|byte| !is_xml_whitespace_byte(*byte))
            .unwrap_or(rest.len());
    }

    fn next_after_whitespace_is(&self, literal: &str) -> bool {
        trim_xml_whitespace_start(self.rest()).starts_with(literal)
    }

    fn eat(&mut self, literal: &str) -> bool {
        let found = self.rest().starts_with(literal);
        if found {
            self.position += literal.len();
        }
        found
    }

    /// An element name of ASCII letters, digits and `_` (anything fancier: slow path).
    fn name(&mut self) -> Option<&'a str> {
        let rest = self.rest();
        let length = rest
            .as_bytes()
            .iter()
            .position(|byte| !SIMPLE_NAME_BYTE[usize::from(*byte)])
            .unwrap_or(rest.len());
        let name = rest.get(..length).filter(|name| !name.is_empty())?;
        self.position += length;
        Some(name)
    }

    /// `<![CDATA[v]]>` or plain text without `&`, up to the next `<`.
    fn value(&mut self) -> Option<&'a str> {
        if self.eat("<![CDATA[") {
            let rest = self.rest();
            let end = find_cdata_end(rest)?;
            self.position += end + "]]>".len();
            return rest.get(..end);
        }
        // Plain values are short (numbers, keywords): one pass looking for both bytes
        // beats two searches.
        let rest = self.rest();
        let end = rest.bytes().position(|byte| byte == b'<' || byte == b'&')?;
        if rest.as_bytes()[end] == b'&' {
            return None;
        }
        let text = rest.get(..end)?;
        self.position += end;
        Some(text)
    }
}

/// Bytes of the names [`Cursor::name`] accepts: ASCII letters, digits and `_`. A table,
/// because the name loop is the scanner's hottest (benches/callback.rs).
const SIMPLE_NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || b == b'_';
        byte += 1;
    }
    table
};

/// Where `]]>` starts. Searching for the single byte `]` (a fast memchr in `core`)
/// beats a substring search: base64 and most text contain no `]` at all.
fn find_cdata_end(text: &str) -> Option<usize> {
    let mut from = 0;
    loop {
        let candidate = from + text.get(from..)?.find(']')?;
        if text.get(candidate..)?.starts_with("]]>") {
            return Some(candidate);
        }
        from = candidate + 1;
    }
}

fn trim_xml_whitespace_start(text: &str) -> &str {
    text.trim_start_matches(XML_WHITESPACE)
}

/// The full path: any well-formed document, through quick-xml.
pub(super) fn scan_general(document: &str) -> Result<Fields<'_>, ParseError> {
    // Default configuration: no text trimming (content must stay exact) and end tag
    // names checked. quick-xml never resolves entities itself; we unescape below with
    // the five predefined ones only.
    let mut reader = Reader::from_str(document);
    let mut scanner = Scanner {
        fields: Fields {
            values: Default::default(),
            mem_change_items: None,
        },
        depth: 0,
        root_seen: false,
        field: Inside::Ignored,
        in_item: false,
        field_text: TextAccumulator::default(),
        item_text: TextAccumulator::default(),
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|error| xml_error(document, reader.error_position(), error))?;
        match event {
            XmlEvent::Start(start) => scanner.open(start.local_name().as_ref())?,
            // `<AgentID/>`: an element with empty text.
            XmlEvent::Empty(start) => {
                scanner.open(start.local_name().as_ref())?;
                scanner.close()?;
            }
            XmlEvent::End(_) => scanner.close()?,
            XmlEvent::Text(text) => {
                // Layout between elements is most of the events: skip it cheaply
                // (whitespace holds no entity reference to check).
                if !scanner.wants_text() && text.iter().copied().all(is_xml_whitespace_byte) {
                    continue;
                }
                // Unescape even text we skip: an unknown `&name;` anywhere is refused.
                let piece = text
                    .unescape_with(resolve_xml_entity)
                    .map_err(|error| xml_error(document, reader.buffer_position(), error))?;
                scanner.text(piece)?;
            }
            XmlEvent::CData(cdata) => {
                let piece = cdata
                    .decode()
                    .map_err(|_| ParseError::malformed("CDATA section is not valid UTF-8"))?;
                scanner.cdata(piece)?;
            }
            XmlEvent::DocType(_) => return Err(ParseError::DoctypeNotAllowed),
            XmlEvent::Comment(_) | XmlEvent::Decl(_) | XmlEvent::PI(_) => {}
            XmlEvent::Eof => break,
        }
    }
    if !scanner.root_seen {
        return Err(ParseError::malformed("no root element"));
    }
    if scanner.depth != 0 {
        return Err(ParseError::malformed("document ends inside an element"));
    }
    Ok(scanner.fields)
}

/// Maps a quick-xml error to a client-safe reason: a fixed description and the byte
/// offset, never element names or content from the document.
fn xml_error(document: &str, position: u64, error: quick_xml::Error) -> ParseError {
    use quick_xml::errors::{IllFormedError, SyntaxError};
    use quick_xml::escape::EscapeError;
    use quick_xml::Error;

    let reason = match error {
        Error::IllFormed(IllFormedError::MissingDoctypeName) => {
            return ParseError::DoctypeNotAllowed
        }
        Error::Syntax(SyntaxError::InvalidBangMarkup) if is_declaration_at(document, position) => {
            return ParseError::DoctypeNotAllowed
        }
        Error::Escape(EscapeError::UnrecognizedEntity(..)) => return ParseError::EntityNotAllowed,
        Error::Escape(EscapeError::UnterminatedEntity(_)) => "unterminated `&` reference",
        Error::Escape(EscapeError::InvalidCharRef(_)) => "invalid numeric character reference",
        Error::Syntax(SyntaxError::InvalidBangMarkup) => "unknown `<!` markup",
        Error::Syntax(SyntaxError::UnclosedPIOrXmlDecl) => "unclosed `<?` instruction",
        Error::Syntax(SyntaxError::UnclosedComment) => "unclosed comment",
        Error::Syntax(SyntaxError::UnclosedDoctype) => return ParseError::DoctypeNotAllowed,
        Error::Syntax(SyntaxError::UnclosedCData) => "unclosed CDATA section",
        Error::Syntax(SyntaxError::UnclosedTag) => "unclosed tag",
        Error::IllFormed(IllFormedError::MismatchedEndTag { .. }) => "mismatched end tag",
        Error::IllFormed(IllFormedError::UnmatchedEndTag(_)) => "end tag without start tag",
        Error::IllFormed(IllFormedError::MissingEndTag(_)) => "missing end tag",
        Error::IllFormed(IllFormedError::MissingDeclVersion(_)) => {
            "XML declaration without version"
        }
        Error::IllFormed(IllFormedError::DoubleHyphenInComment) => "`--` inside a comment",
        Error::Encoding(_) => "text is not valid UTF-8",
        Error::InvalidAttr(_) => "invalid attribute",
        Error::Io(_) | Error::Namespace(_) => "invalid XML",
    };
    ParseError::malformed(format!("{reason} near byte {position}"))
}

/// True when the markup at `position` is a DTD declaration (`<!ENTITY`, `<!ELEMENT`,
/// `<!ATTLIST`, `<!NOTATION`) outside a DOCTYPE: refused like a DOCTYPE.
fn is_declaration_at(document: &str, position: u64) -> bool {
    let start = usize::try_from(position).unwrap_or(usize::MAX);
    let Some(rest) = document.as_bytes().get(start..) else {
        return false;
    };
    let rest = rest.strip_prefix(b"<").unwrap_or(rest);
    let Some(rest) = rest.strip_prefix(b"!") else {
        return false;
    };
    [b"ENTITY".as_slice(), b"ELEMENT", b"ATTLIST", b"NOTATION"]
        .iter()
        .any(|keyword| {
            rest.len() >= keyword.len() && rest[..keyword.len()].eq_ignore_ascii_case(keyword)
        })
}

pub(super) fn parse_envelope(body: &str) -> Result<XmlEnvelope, ParseError> {
    let fields = scan(body)?;
    Ok(XmlEnvelope {
        to_user_name: fields.optional_text(Tag::ToUserName),
        encrypt: fields.required_text(Tag::Encrypt)?,
        agent_id: fields.optional_text(Tag::AgentId),
    })
}

pub(super) fn parse_app(plaintext: &str) -> Result<Event, ParseError> {
    let fields = scan(plaintext)?;
    let unknown = || Event::Unknown {
        msg_type: fields.keyword(Tag::MsgType).map(str::to_owned),
        event: fields.keyword(Tag::Event).map(str::to_owned),
        raw: plaintext.to_owned(),
    };
    let event = match (fields.keyword(Tag::MsgType), fields.keyword(Tag::Event)) {
        (Some("event"), Some("change_external_chat")) => {
            Event::ExternalChatChange(external_chat_change(&fields)?)
        }
        (Some("event"), Some("change_external_contact")) => {
            match external_contact_change(&fields) {
                Ok(change) => Event::ExternalContactChange(change),
                // A change type WeCom added after us may lack the ids we require:
                // keep it as Unknown rather than refuse it.
                Err(ParseError::MissingField(_))
                    if matches!(
                        fields.keyword(Tag::ChangeType).map(ContactChangeType::from),
                        Some(ContactChangeType::Other(_))
                    ) =>
                {
                    unknown()
                }
                Err(error) => return Err(error),
            }
        }
        (Some("event"), Some("enter_agent")) => Event::EnterAgent(EnterAgent {
            header: header(&fields)?,
            event_key: fields.optional_text(Tag::EventKey),
        }),
        (Some("text"), _) => Event::AppText(AppText {
            header: header(&fields)?,
            content: fields
                .get(Tag::Content)
                .ok_or(ParseError::MissingField("Content"))?
                .to_owned(),
            msg_id: fields.required_number(Tag::MsgId, "an unsigned 64-bit integer")?,
        }),
        _ => unknown(),
    };
    Ok(event)
}

fn header(fields: &Fields<'_>) -> Result<AppHeader, ParseError> {
    Ok(AppHeader {
        to_user_name: fields.required_text(Tag::ToUserName)?,
        from_user_name: fields.required_text(Tag::FromUserName)?,
        create_time: fields.required_number(Tag::CreateTime, "a 64-bit integer")?,
        agent_id: fields.optional_text(Tag::AgentId),
    })
}

fn external_chat_change(fields: &Fields<'_>) -> Result<ExternalChatChange, ParseError> {
    let change_type = fields
        .keyword(Tag::ChangeType)
        .filter(|value| !value.is_empty())
        .ok_or(ParseError::MissingField("ChangeType"))?;
    Ok(ExternalChatChange {
        header: header(fields)?,
        chat_id: fields.required_text(Tag::ChatId)?,
        change_type: ChatChangeType::from(change_type),
        update_detail: fields
            .keyword(Tag::UpdateDetail)
            .filter(|value| !value.is_empty())
            .map(Into::into),
        join_scene: fields.optional_number(Tag::JoinScene, "an unsigned integer")?,
        quit_scene: fields.optional_number(Tag::QuitScene, "an unsigned integer")?,
        mem_change_cnt: fields.optional_number(Tag::MemChangeCnt, "an unsigned integer")?,
        mem_change_list: mem_change_list(fields),
        last_mem_ver: fields.optional_text(Tag::LastMemVer),
        cur_mem_ver: fields.optional_text(Tag::CurMemVer),
    })
}

/// Current payloads list ids as `<Item>` children; older ones (and older SDKs) used
/// one comma-separated text. Accept both; blank entries are dropped.
fn mem_change_list(fields: &Fields<'_>) -> Vec<String> {
    let keep = |id: &str| {
        let id = trim_xml_whitespace(id);
        (!id.is_empty()).then(|| id.to_owned())
    };
    match (&fields.mem_change_items, fields.get(Tag::MemChangeList)) {
        (Some(items), _) => items.iter().filter_map(|item| keep(item)).collect(),
        (None, Some(text)) => text.split(',').filter_map(keep).collect(),
        (None, None) => Vec::new(),
    }
}

fn external_contact_change(fields: &Fields<'_>) -> Result<ExternalContactChange, ParseError> {
    let change_type = fields
        .keyword(Tag::ChangeType)
        .filter(|value| !value.is_empty())
        .ok_or(ParseError::MissingField("ChangeType"))?;
    Ok(ExternalContactChange {
        header: header(fields)?,
        change_type: ContactChangeType::from(change_type),
        user_id: fields.required_text(Tag::UserId)?,
        external_user_id: fields.required_text(Tag::ExternalUserId)?,
        state: fields.optional_text(Tag::State),
        welcome_code: fields.optional_text(Tag::WelcomeCode),
        source: fields.optional_text(Tag::Source),
        fail_reason: fields.optional_text(Tag::FailReason),
    })
}
