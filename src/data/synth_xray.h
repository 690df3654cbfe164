/*
 * synth_xray.h — synthetic chest radiographs with short report-style captions, written as
 * DICOM files (`mmtune synth --domain xray`): the medical example's data (docs/medical.md).
 *
 * No real patient data can be shipped or downloaded here, so the studies are drawn: a
 * frontal chest view (body outline, two air-filled lung fields crossed by ribs, the
 * mediastinum, the heart shadow) with at most one finding:
 *   normal        "no acute findings" / "the lungs are clear" / "normal chest"
 *   nodule        small or large, in the right or left lung, upper, middle or lower zone:
 *                 "small nodule in the right upper zone" / "small right upper zone lung nodule" /
 *                 "a small nodule in the upper right lung"
 *   effusion      small or large, right or left: "large left pleural effusion" / ...
 *   cardiomegaly  "enlarged heart" / "the heart is enlarged" / "cardiomegaly"
 * Sides are the patient's, as radiologists write them: the patient's right lung is on the
 * image's left (the film is read facing the patient). The words of every report are in
 * mmt_xray_vocabulary(), the list `caption --allowed-words` constrains decoding to.
 *
 * Values are 12-bit (0..4095, bright = dense) and each study is stored in one of four
 * encodings real archives mix, all rendering to nearly the same picture through its window:
 *   0  CR, explicit VR, MONOCHROME2, 12 bits unsigned
 *   1  CR, implicit VR, MONOCHROME1 (stored 4095 - v: high values dark), 12 bits unsigned
 *   2  DX, explicit VR, MONOCHROME2, 16 bits signed, stored v - 2048, Rescale Intercept 2048
 *   3  DX, explicit VR, MONOCHROME2, 14 bits unsigned, stored 4 v, Rescale Slope 0.25
 * with a window near centre 2048, width 4096 (a little different per study, as exposure is).
 *
 * Integer arithmetic only (synth_rng.h): a seed gives the same bytes on every machine.
 */
#ifndef MMT_DATA_SYNTH_XRAY_H
#define MMT_DATA_SYNTH_XRAY_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "data/dicom_write.h"
#include "data/synth.h"

typedef enum mmt_xray_finding {
    MMT_XRAY_NORMAL, MMT_XRAY_NODULE, MMT_XRAY_EFFUSION, MMT_XRAY_CARDIOMEGALY, MMT_XRAY_FINDING_COUNT
} mmt_xray_finding;

typedef struct mmt_xray_study {
    mmt_xray_finding finding;
    int side;                 /* 0 the patient's right (image left), 1 left */
    int zone;                 /* nodule: 0 upper, 1 middle, 2 lower */
    int large;                /* nodule and effusion: 0 small, 1 large */
    int jitter_x, jitter_y;   /* nodule: offset in its zone, 1/1000 of the image */
    int body_dx;              /* patient position: horizontal shift, 1/1000 of the image */
    int lung_scale;           /* lung size, 1/1000 (900..1100) */
    int exposure;             /* tissue contrast, 1/1000 (920..1080) */
    int encoding;             /* 0..3, see above */
    int window_center, window_width;
    uint64_t noise_seed, caption_seed;
} mmt_xray_study;

const char *mmt_xray_finding_name(mmt_xray_finding f); /* "normal", "nodule", ... */

/* The study for image `index` of a split. Pure function of its arguments. */
void mmt_xray_study_make(uint64_t seed, mmt_synth_split split, int64_t index, mmt_xray_study *out);
/* Report wording `variant` (0, 1, 2; others wrap). Returns the length (always < cap, which
 * should be MMT_SYNTH_CAPTION_MAX). */
size_t mmt_xray_report(const mmt_xray_study *st, int variant, char *buf, size_t cap);
/* The 12-bit values of a size x size image (size 16..1024) into `values`. */
void mmt_xray_render(const mmt_xray_study *st, int64_t size, uint16_t *values);
/* The DICOM description of the study (the stored values go to `stored`, size x size),
 * ready for mmt_dicom_write_file; `patient_id` must outlive the use of *w. */
void mmt_xray_dicom_spec(const mmt_xray_study *st, int64_t size, const uint16_t *values, uint16_t *stored,
                         const char *patient_id, mmt_dicom_write_spec *w);
/* Every word a report may use (NULL-terminated, static). */
const char *const *mmt_xray_vocabulary(void);

#endif
