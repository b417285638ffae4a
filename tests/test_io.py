"""Reading questions and labeled pairs (`dupfinder.io`): messy rows repaired or skipped and counted,
formats (gzip, TSV, BOM, plain text, pairs tables), the column errors, and duplicate clusters."""

import gzip

import pytest

from dupfinder.errors import InputError
from dupfinder.io import duplicate_clusters, load_pairs, load_questions

HEADER = b"id,qid1,qid2,question1,question2,is_duplicate\n"


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_messy_rows_are_repaired_or_skipped_and_counted(tmp_path):
    body = (
        b'1,1,2,"How old are you?","What is your age?",1\n'
        b'2,3,4,"Caf\xe9 near me?","Where is a caf\xc3\xa9?",0\n'  # invalid UTF-8 byte, then valid
        b'3,5,6,"","Empty first?",0\n'  # empty question
        b'4,7,8,"He said ""hi"", then\nleft?","Multi-line, quoted?",1\n'  # doubled quotes, newline
        b'5,9,10,too,many,fields,here,1\n'
        b'6,11,12,"Fine?","Also fine?",maybe\n'  # unreadable label
    )
    pairs = load_pairs(write(tmp_path, "messy.csv", HEADER + body))
    assert len(pairs) == 3
    assert pairs.questions[7] == 'He said "hi", then\nleft?'
    assert "\ufffd" in pairs.questions[3]
    r = pairs.report
    assert r.rows == 6 and r.kept == 3
    assert r.skipped == {"empty question": 1, "wrong number of fields": 1, "unreadable label": 1}
    assert r.bytes_fixed["invalid UTF-8"] == 1


def test_read_report_counts_fixed_bytes_as_bytes_not_rows(tmp_path):
    body = b'1,1,2,"Bad \xff\xfe here?","Nul\x00 here?",0\n2,3,4,"Fine?","Also fine?",1\n'
    r = load_pairs(write(tmp_path, "bytes.csv", HEADER + body)).report
    assert r.bytes_fixed == {"invalid UTF-8": 2, "NUL": 1} and not r.repaired
    assert r.summary().endswith("2 rows, 2 kept, 2 invalid UTF-8 bytes replaced, 1 NUL byte removed")


def test_gzip_tsv_and_bom(tmp_path):
    tsv = "\ufeffid\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\tA?\tB?\t1\n".encode()
    pairs = load_pairs(write(tmp_path, "p.tsv.gz", gzip.compress(tsv)))
    assert pairs.texts(1) == ["A?"] and pairs.label.tolist() == [1]


def test_without_qid_columns_ids_come_from_normalized_text(tmp_path):
    data = b"question1,question2,is_duplicate\nHow old are you?,What is your age?,1\nhow  OLD are you?,Who are you?,0\n"
    pairs = load_pairs(write(tmp_path, "noqid.csv", data))
    assert pairs.qid1[0] == pairs.qid1[1]  # same question after normalization
    assert len(pairs.questions) == 3


def test_missing_column_names_the_columns_found(tmp_path):
    with pytest.raises(InputError, match=r"column 'question1' not found; columns are: id, q, is_duplicate. Use --q1-column"):
        load_pairs(write(tmp_path, "bad.csv", b"id,q,is_duplicate\n1,x,1\n"))


@pytest.mark.parametrize("content,message", [(b"", "is empty"), (b"\n\n  \n", "is empty"), (HEADER, "no usable question pairs")])
def test_empty_files(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        load_pairs(write(tmp_path, "empty.csv", content))


def test_missing_file_and_bad_gzip(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_pairs(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="not a valid gzip"):
        load_pairs(write(tmp_path, "bad.csv.gz", b"\x1f\x8b" + b"garbage"))


def test_duplicate_clusters_are_connected_components(pairs_file):
    pairs = load_pairs(pairs_file)
    c = duplicate_clusters(pairs)
    assert c[1] == c[2] == c[30]  # 1-2 and 2-30 are duplicates
    assert c[5] == c[6] == c[31]
    assert c[3] != c[4]  # labeled non-duplicate
    assert c[1] != c[21]


def test_load_questions_from_pairs_table_and_lines(tmp_path, pairs_file):
    q = load_questions(pairs_file)
    assert q.kind == "pairs" and len(q) == len(set(q.ids)) == 47
    t = load_questions(write(tmp_path, "q.csv", b"qid,text\n7,How?\n8,\n"))
    assert t.kind == "table" and t.ids == ["7", "8"] and t.ok.tolist() == [True, False]
    lines = load_questions(write(tmp_path, "q.txt", b"One?\n\nTwo?\n"))
    assert lines.kind == "lines" and lines.texts == ["One?", "", "Two?"] and lines.ids == [None] * 3
    with pytest.raises(InputError, match="unknown file type"):
        load_questions(write(tmp_path, "q.xml", b"<q/>"))
    with pytest.raises(InputError, match="column 'body' not found; columns are: qid, text. Use --text-column"):
        load_questions(tmp_path / "q.csv", text_column="body")
