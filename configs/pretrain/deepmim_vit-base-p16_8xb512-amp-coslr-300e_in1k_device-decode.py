# deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py with the device decoding path
# (_base_/device_decode.py): same model, data distribution, schedule and loss.
_base_ = ['./deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py', './_base_/device_decode.py']

train_dataloader = dict(collate_fn=dict(_delete_=True, type='image_bytes_collate'),
                        dataset=dict(pipeline={{_base_.device_decode_pipeline}}))
model = dict(data_preprocessor={{_base_.device_decode_preprocessor}})
