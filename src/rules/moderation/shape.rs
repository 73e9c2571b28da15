//! Shape tricks among Chinese characters: look-alike characters (形近字) and
//! characters written as their two components (`亻言` for `信`).
//!
//! No maintained, permissively licensed source of component data exists as
//! a crate: the usual Ideographic Description Sequence collections derive
//! from CHISE and are GPL, which this MIT project cannot ship. So the two
//! tables below are written by hand from the characters' structure, covering
//! the characters spam vocabulary is made of, and the components people type
//! for them (radical forms such as `亻` and their stand-alone characters such
//! as `人`). Cross-script look-alikes (Cyrillic, Greek, Armenian letters, CJK
//! radical-supplement forms) come from Unicode's confusables data instead
//! (see `fold.rs`).
//!
//! Homophones are deliberately absent: characters that share a sound
//! (`睹`/`赌`) are caught by pronunciation, which needs no table.

use std::collections::HashMap;

/// Groups of look-alike characters that do **not** share a pronunciation.
/// A term character in a group also matches the others (see `phonetic.rs`:
/// their readings are added to the term's, never the other way round, so
/// messages are read as written).
pub(crate) const LOOKALIKE_GROUPS: &[&str] = &[
    "微徽徵",
    "贷货",
    "裸棵稞",
    "己已巳",
    "未末",
    "土士",
    "日曰",
    "人入",
    "大犬",
    "王玉",
    "天夭",
    "免兔",
    "钱线",
    "票栗粟",
    "发友",
    "开井",
    "情睛猜",
    "群郡",
    "代伐",
    "毒每",
    "现观",
    "号亏",
    "网冈",
    "充允",
    "抽油",
    "淫滛",
    "找我",
    "博傅",
    "聊柳",
];

/// Characters and the component pairs that spell them, left to right or top
/// to bottom. Several spellings are separated by spaces.
const COMPOSITIONS: &[(&str, &str)] = &[
    ("信", "亻言 人言 イ言"),
    ("加", "力口"),
    ("赌", "贝者 貝者"),
    ("博", "十尃"),
    ("彩", "采彡"),
    ("贷", "代贝"),
    ("裸", "衤果 礻果 ネ果"),
    ("聊", "耳卯"),
    ("赚", "贝兼"),
    ("钱", "钅戋 金戋"),
    ("群", "君羊"),
    ("约", "纟勺 糸勺"),
    ("炮", "火包"),
    ("泡", "氵包 水包"),
    ("票", "西示"),
    ("购", "贝勾"),
    ("嫖", "女票"),
    ("妓", "女支"),
    ("枪", "木仓"),
    ("码", "石马"),
    ("骗", "马扁"),
    ("钓", "钅勺 金勺"),
    ("现", "王见 玉见"),
    ("值", "亻直 人直"),
    ("代", "亻弋 人弋"),
    ("好", "女子"),
    ("奶", "女乃"),
    ("妹", "女未"),
    ("跑", "足包"),
    ("粉", "米分"),
    ("秒", "禾少"),
    ("抢", "扌仓 手仓"),
    ("打", "扌丁 手丁"),
    ("扣", "扌口 手口"),
    ("扫", "扌彐"),
    ("找", "扌戈 手戈"),
    ("操", "扌喿 手喿"),
    ("挂", "扌圭 手圭"),
    ("汇", "氵匚"),
    ("油", "氵由 水由"),
    ("法", "氵去 水去"),
    ("话", "讠舌 言舌"),
    ("讯", "讠卂 言卂"),
    ("说", "讠兑 言兑"),
    ("请", "讠青 言青"),
    ("课", "讠果 言果"),
    ("谈", "讠炎 言炎"),
    ("证", "讠正 言正"),
    ("诈", "讠乍 言乍"),
    ("件", "亻牛 人牛"),
    ("体", "亻本 人本"),
    ("仔", "亻子 人子"),
    ("伙", "亻火 人火"),
    ("他", "亻也 人也"),
    ("你", "亻尔 人尔"),
    ("们", "亻门 人门"),
    ("价", "亻介 人介"),
    ("份", "亻分 人分"),
    ("付", "亻寸 人寸"),
    ("传", "亻专 人专"),
    ("佳", "亻圭 人圭"),
    ("便", "亻更 人更"),
    ("保", "亻呆 人呆"),
    ("倍", "亻咅 人咅"),
    ("借", "亻昔 人昔"),
    ("偷", "亻俞 人俞"),
    ("做", "亻故 人故"),
    ("情", "忄青 心青"),
    ("性", "忄生 心生"),
    ("快", "忄夬 心夬"),
    ("财", "贝才"),
    ("贩", "贝反"),
    ("账", "贝长"),
    ("赔", "贝咅"),
    ("股", "月殳"),
    ("胸", "月匈"),
    ("脱", "月兑"),
    ("骚", "马蚤"),
    ("娼", "女昌"),
    ("婊", "女表"),
    ("妈", "女马"),
    ("姐", "女且"),
    ("娘", "女良"),
    ("鸡", "又鸟"),
    ("狗", "犭句"),
    ("猪", "犭者"),
    ("独", "犭虫"),
    ("球", "王求 玉求"),
    ("红", "纟工 糸工"),
    ("结", "纟吉 糸吉"),
    ("给", "纟合 糸合"),
    ("线", "纟戋 糸戋"),
    ("银", "钅艮 金艮"),
    ("饭", "饣反 食反"),
    ("吧", "口巴"),
    ("吗", "口马"),
    ("呢", "口尼"),
    ("吃", "口乞"),
    ("啪", "口拍"),
    ("吸", "口及"),
    ("唱", "口昌"),
    ("地", "土也"),
    ("城", "土成"),
    ("村", "木寸"),
    ("机", "木几"),
    ("秘", "禾必"),
    ("私", "禾厶"),
    ("租", "禾且"),
    ("积", "禾只"),
    ("视", "礻见 ネ见"),
    ("社", "礻土 ネ土"),
    ("福", "礻畐 ネ畐"),
    ("神", "礻申 ネ申"),
    ("时", "日寸"),
    ("晚", "日免"),
    ("的", "白勺"),
    ("江", "氵工 水工"),
    ("河", "氵可 水可"),
    ("海", "氵每 水每"),
    ("洗", "氵先 水先"),
    ("漂", "氵票 水票"),
    ("部", "咅阝"),
    ("都", "者阝"),
    ("邮", "由阝"),
    ("陪", "阝咅"),
    ("院", "阝完"),
    ("阴", "阝月"),
    ("阳", "阝日"),
    ("到", "至刂"),
    ("别", "另刂"),
    ("利", "禾刂"),
    ("刘", "文刂"),
    ("封", "圭寸"),
    ("对", "又寸"),
    ("难", "又隹"),
    ("欢", "又欠"),
    ("数", "娄攵"),
    ("放", "方攵"),
    ("政", "正攵"),
    ("故", "古攵"),
    ("功", "工力"),
    ("动", "云力"),
    ("助", "且力"),
    ("男", "田力"),
    ("思", "田心"),
    ("想", "相心"),
    ("意", "音心"),
    ("恩", "因心"),
    ("念", "今心"),
    ("志", "士心"),
    ("忘", "亡心"),
    ("尖", "小大"),
    ("尘", "小土"),
    ("卡", "上下"),
    ("否", "不口"),
    ("吾", "五口"),
    ("古", "十口"),
    ("叶", "口十"),
    ("早", "日十"),
    ("百", "一白"),
    ("棒", "木奉"),
    ("婚", "女昏"),
    ("姻", "女因"),
    ("妻", "事女"),
    ("期", "其月"),
    ("胡", "古月"),
    ("朗", "良月"),
    ("够", "句多"),
    ("彬", "林彡"),
    ("缘", "纟彖 糸彖"),
    ("绩", "纟责 糸责"),
    ("微", "彳散"),
];

/// The characters that look like `c` (empty when it is in no group).
pub(crate) fn lookalikes(c: char) -> impl Iterator<Item = char> {
    group_of(c)
        .into_iter()
        .flat_map(|group| group.chars())
        .filter(move |&member| member != c)
}

/// The look-alike group holding `c`: a binary search in a sorted index made
/// once, as engines ask for every character of every term.
fn group_of(c: char) -> Option<&'static str> {
    static INDEX: std::sync::OnceLock<Vec<(char, &'static str)>> = std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| {
        // Groups do not overlap (a test says so): one entry per character.
        let mut index: Vec<(char, &'static str)> = LOOKALIKE_GROUPS
            .iter()
            .flat_map(|&group| group.chars().map(move |member| (member, group)))
            .collect();
        index.sort_unstable_by_key(|&(member, _)| member);
        index
    });
    index
        .binary_search_by_key(&c, |&(member, _)| member)
        .ok()
        .map(|at| index[at].1)
}

/// Whether `a` and `b` are different characters of one look-alike group.
pub(crate) fn look_alike(a: char, b: char) -> bool {
    a != b && lookalikes(a).any(|member| member == b)
}

/// Component pairs and the character they spell. Pairs that are themselves
/// everyday words (`上下`, `女子`, `中心`) are left out: reading them as one
/// character would garble ordinary text.
pub(crate) fn compositions(is_word: impl Fn(char, char) -> bool) -> HashMap<(char, char), char> {
    let mut map = HashMap::new();
    for &(whole, spellings) in COMPOSITIONS {
        let Some(whole) = whole.chars().next() else {
            continue;
        };
        for spelling in spellings.split(' ') {
            let mut parts = spelling.chars();
            if let (Some(first), Some(second), None) = (parts.next(), parts.next(), parts.next()) {
                if !is_word(first, second) {
                    map.entry((first, second)).or_insert(whole);
                }
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_composition_is_two_characters_and_groups_do_not_overlap() {
        for &(whole, spellings) in COMPOSITIONS {
            assert_eq!(whole.chars().count(), 1, "{whole}");
            for spelling in spellings.split(' ') {
                assert_eq!(spelling.chars().count(), 2, "{whole}: {spelling}");
            }
        }
        let mut seen = std::collections::HashSet::new();
        for group in LOOKALIKE_GROUPS {
            assert!(group.chars().count() >= 2, "{group}");
            for c in group.chars() {
                assert!(seen.insert(c), "{c} is in two groups");
            }
        }
    }

    #[test]
    fn everyday_pairs_are_not_composed() {
        let map = compositions(crate::rules::moderation::lexicon::is_pair);
        assert_eq!(map.get(&('亻', '言')), Some(&'信'));
        assert_eq!(map.get(&('人', '言')), Some(&'信'));
        assert_eq!(map.get(&('上', '下')), None, "上下 is a word");
        assert_eq!(map.get(&('女', '子')), None, "女子 is a word");
        assert_eq!(lookalikes('徽').collect::<String>(), "微徵");
        assert!(look_alike('货', '贷'));
        assert!(!look_alike('货', '货'));
        assert_eq!(lookalikes('的').count(), 0);
    }
}
