//! Fuzzes the safetensors checkpoint loaders: every input ends in `Ok` or `Err`, never a
//! panic; a failed load leaves the store unchanged; a loaded store saves and reloads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recurrent::checkpoint;
use recurrent::init::Initializer;
use recurrent::ParamStore;

fn store() -> ParamStore<f32> {
    let mut p = ParamStore::new(0);
    p.create(
        "rnn/basic_lstm_cell/kernel",
        &[3, 8],
        Initializer::GlorotUniform,
    )
    .unwrap();
    p.create("rnn/basic_lstm_cell/bias", &[8], Initializer::Zeros)
        .unwrap();
    p.create("dense/kernel", &[2, 2], Initializer::GlorotUniform)
        .unwrap();
    p
}

fn bits(p: &ParamStore<f32>) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    p.iter()
        .map(|(_, n, v)| {
            let b = v.iter().map(|x| x.to_bits()).collect();
            (n.to_string(), v.shape().to_vec(), b)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut target = store();
    let before = bits(&target);
    if checkpoint::load_from_bytes(&mut target, data).is_err() {
        assert_eq!(bits(&target), before, "a failed load changed the store");
    }
    let _ = checkpoint::load_from_bytes_converting(&mut target, data);
    if let Ok(fresh) = checkpoint::load_new_from_bytes::<f32>(data, 0) {
        let saved = checkpoint::save_to_bytes(&fresh).expect("a loaded store saves");
        let again = checkpoint::load_new_from_bytes::<f32>(&saved, 0).expect("and reloads");
        assert_eq!(bits(&again), bits(&fresh));
    }
    let _ = checkpoint::load_new_from_bytes::<f64>(data, 0);
});
