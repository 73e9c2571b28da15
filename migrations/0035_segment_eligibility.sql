-- A lottery or a poll may be limited to a saved segment (issue 20): a member
-- enters or votes only while the segment's filter selects them. No foreign
-- key: deleting the segment later leaves the id, and then nobody qualifies.
alter table lotteries add column segment_id integer;
alter table polls add column segment_id integer;
