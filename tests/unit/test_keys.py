from infergate.domain import keys


def test_a_new_key_has_the_prefix_and_passes_its_own_checksum():
    key = keys.new_api_key()
    assert key.startswith("igk_")
    assert len(key) == keys.KEY_LENGTH
    assert keys.is_well_formed(key)


def test_keys_are_unique():
    assert len({keys.new_api_key() for _ in range(1000)}) == 1000


def test_a_typo_fails_the_checksum():
    key = keys.new_api_key()
    broken = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    assert not keys.is_well_formed(broken)


def test_junk_is_not_a_key():
    for junk in ["", "igk_", "sk-abc", "igk_" + "!" * 38, keys.new_api_key() + "x", "IGK_" + keys.new_api_key()[4:]]:
        assert not keys.is_well_formed(junk)


def test_the_stored_hash_is_sha256_hex_and_stable():
    key = keys.new_api_key()
    assert keys.hash_key(key) == keys.hash_key(key)
    assert len(keys.hash_key(key)) == 64
    assert key not in keys.hash_key(key)


def test_ids_name_their_kind():
    assert keys.new_id("usr").startswith("usr_")
    assert keys.new_id("usr") != keys.new_id("usr")
